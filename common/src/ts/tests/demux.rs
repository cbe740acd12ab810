//! A minimal TS demuxer for the tests, written from ISO/IEC 13818-1: packets, adaptation
//! fields, units reassembled per PID, PSI sections and PES headers. It asserts what it reads.

use super::super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Af {
    pub(super) discontinuity: bool,
    pub(super) random_access: bool,
    pub(super) pcr: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct Packet {
    pub(super) pid: u16,
    pub(super) pusi: bool,
    pub(super) cc: u8,
    pub(super) af: Option<Af>,
    pub(super) payload: Vec<u8>,
}

/// Splits a segment into packets, checking sizes, sync bytes and that adaptation-field
/// stuffing is 0xff.
pub(super) fn packets(ts: &[u8]) -> Vec<Packet> {
    assert_eq!(ts.len() % PACKET_LEN, 0, "not a whole number of packets");
    ts.chunks(PACKET_LEN)
        .map(|p| {
            assert_eq!(p.len(), 188);
            assert_eq!(p[0], SYNC_BYTE);
            assert_eq!(p[1] & 0x80, 0, "transport_error_indicator");
            let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
            let control = (p[3] >> 4) & 3;
            assert!(control & 1 == 1, "every packet we write has payload");
            let mut pos = 4;
            let af = (control & 2 != 0).then(|| {
                let len = usize::from(p[4]);
                assert!(len <= 183);
                let mut af = Af::default();
                if len > 0 {
                    let flags = p[5];
                    af.discontinuity = flags & 0x80 != 0;
                    af.random_access = flags & 0x40 != 0;
                    let mut i = 6;
                    if flags & 0x10 != 0 {
                        let b = &p[6..12];
                        af.pcr = Some(
                            u64::from(b[0]) << 25
                                | u64::from(b[1]) << 17
                                | u64::from(b[2]) << 9
                                | u64::from(b[3]) << 1
                                | u64::from(b[4] >> 7),
                        );
                        assert_eq!(b[4] & 0x7e, 0x7e, "reserved bits");
                        i = 12;
                    }
                    assert!(p[i..5 + len].iter().all(|&b| b == 0xff), "af stuffing");
                }
                pos = 5 + len;
                af
            });
            Packet {
                pid,
                pusi: p[1] & 0x40 != 0,
                cc: p[3] & 0x0f,
                af,
                payload: p[pos..].to_vec(),
            }
        })
        .collect()
}

/// One PES packet or PSI section, reassembled, with its first packet.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) pid: u16,
    pub(super) first: Packet,
    pub(super) data: Vec<u8>,
}

/// Reassembles units, checking continuity counters run 0, 1, 2... per PID and that only the
/// first packet of each PID sets the discontinuity indicator.
pub(super) fn units(ts: &[u8]) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut next_cc = std::collections::HashMap::new();
    for p in packets(ts) {
        let first = !next_cc.contains_key(&p.pid);
        let cc = next_cc.entry(p.pid).or_insert(0u8);
        assert_eq!(p.cc, *cc, "continuity counter of pid {:#x}", p.pid);
        let disc = p.af.as_ref().is_some_and(|a| a.discontinuity);
        assert_eq!(
            disc, first,
            "discontinuity only on the first packet of a pid"
        );
        *cc = (*cc + 1) & 0x0f;
        if p.pusi {
            units.push(Unit {
                pid: p.pid,
                first: p.clone(),
                data: p.payload.clone(),
            });
        } else {
            let unit = units
                .iter_mut()
                .rev()
                .find(|u| u.pid == p.pid)
                .expect("continuation without a start");
            unit.data.extend_from_slice(&p.payload);
        }
    }
    units
}

/// A PSI unit's section (after the pointer field), checking the CRC.
pub(super) fn section(unit: &Unit) -> Vec<u8> {
    assert_eq!(unit.data[0], 0, "pointer_field");
    let len = usize::from(u16::from_be_bytes([unit.data[2], unit.data[3]]) & 0x0fff);
    let sec = unit.data[1..4 + len].to_vec();
    assert_eq!(crc32_mpeg2(&sec), 0, "section CRC");
    sec
}

#[derive(Debug)]
pub(super) struct Pes {
    pub(super) stream_id: u8,
    pub(super) packet_length: u16,
    pub(super) pts: u64,
    pub(super) dts: Option<u64>,
    pub(super) payload: Vec<u8>,
}

pub(super) fn pes(unit: &Unit) -> Pes {
    let d = &unit.data;
    assert_eq!(&d[..3], &[0, 0, 1], "packet_start_code_prefix");
    let flags = d[7] >> 6;
    let header_len = usize::from(d[8]);
    let pts = read_timestamp(&d[9..]).expect("pts");
    let dts = (flags == 3).then(|| read_timestamp(&d[14..]).expect("dts"));
    let packet_length = u16::from_be_bytes([d[4], d[5]]);
    if packet_length != 0 {
        assert_eq!(usize::from(packet_length), d.len() - 6, "PES_packet_length");
    }
    Pes {
        stream_id: d[3],
        packet_length,
        pts,
        dts,
        payload: d[9 + header_len..].to_vec(),
    }
}
