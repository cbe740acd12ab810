//! `locate-load`: an open-loop HTTP/1.1 load of locate requests against one node, with the
//! latency of every answer measured from its scheduled send time (so a server that falls
//! behind is charged for the wait too). Keep-alive connections on plain threads.
//!
//! ```sh
//! locate-load --addr 127.0.0.1:8080 --rate 5000 --seconds 20 --connections 16 \
//!   --path '/api/v1/locate/live/s{n}?region=r{r}' --streams 100 --regions 3
//! ```
//! `{n}` in the path is a stream index (Zipf-distributed over `--streams`), `{r}` a region
//! index (uniform over `--regions`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    addr: String,
    /// Requests per second over all connections.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 16)]
    connections: u64,
    #[arg(long, default_value = "/api/v1/locate/live/s{n}?region=r{r}")]
    path: String,
    #[arg(long, default_value_t = 100)]
    streams: u64,
    #[arg(long, default_value_t = 3)]
    regions: u64,
    /// Expected status of every answer (302 for the redirect entries).
    #[arg(long, default_value_t = 200)]
    status: u16,
}

/// One connection's results: latencies in microseconds, and errors.
struct Outcome {
    latencies: Vec<u64>,
    errors: u64,
}

fn main() {
    let args = Args::parse();
    let per_conn = args.rate as f64 / args.connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(args.seconds);
    // Zipf (s = 1) cumulative weights over the streams.
    let weights: Vec<f64> = (1..=args.streams).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let cdf: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    let threads: Vec<_> = (0..args.connections)
        .map(|c| {
            let addr = args.addr.clone();
            let path = args.path.clone();
            let cdf = cdf.clone();
            let (regions, want) = (args.regions.max(1), args.status);
            // Connections start spread over one interval.
            let first = start + interval.mul_f64(c as f64 / args.connections as f64);
            std::thread::spawn(move || {
                run(
                    &addr,
                    &path,
                    &cdf,
                    regions,
                    want,
                    first,
                    interval,
                    end,
                    c + 1,
                )
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        match t.join() {
            Ok(o) => {
                all.extend(o.latencies);
                errors += o.errors;
            }
            Err(_) => errors += 1,
        }
    }
    all.sort_unstable();
    let q = |p: f64| {
        if all.is_empty() {
            0
        } else {
            all[((all.len() - 1) as f64 * p).round() as usize]
        }
    };
    let secs = args.seconds as f64;
    println!(
        "{{\"requests\": {}, \"rate\": {:.0}, \"errors\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}}}",
        all.len(),
        all.len() as f64 / secs,
        errors,
        q(0.5),
        q(0.99),
        q(0.999),
        all.last().copied().unwrap_or(0)
    );
}

#[allow(clippy::too_many_arguments)]
fn run(
    addr: &str,
    path: &str,
    cdf: &[f64],
    regions: u64,
    want: u16,
    first: Instant,
    interval: Duration,
    end: Instant,
    seed: u64,
) -> Outcome {
    let mut out = Outcome {
        latencies: Vec::new(),
        errors: 0,
    };
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut sock: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut due = first;
    while due < end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let n = cdf.partition_point(|c| *c < u);
        let r = next() % regions;
        let p = path
            .replace("{n}", &n.to_string())
            .replace("{r}", &r.to_string());
        let req = format!("GET {p} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let ok = (|| -> std::io::Result<bool> {
            if sock.is_none() {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                sock = Some(s);
            }
            let s = sock.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
            s.write_all(req.as_bytes())?;
            read_response(s, &mut buf, want)
        })();
        match ok {
            Ok(true) => out
                .latencies
                .push(Instant::now().duration_since(due).as_micros() as u64),
            _ => {
                out.errors += 1;
                sock = None;
            }
        }
        due += interval;
    }
    out
}

/// Reads one response (head + Content-Length body); true if its status is `want`.
fn read_response(s: &mut TcpStream, buf: &mut [u8], want: u16) -> std::io::Result<bool> {
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        let text = &buf[..have];
        let Some(head_end) = text.windows(4).position(|w| w == b"\r\n\r\n") else {
            if have == buf.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            continue;
        };
        let head = String::from_utf8_lossy(&text[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if have >= head_end + 4 + len {
            return Ok(status == want);
        }
        if have == buf.len() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}
