//! Test harness: a network namespace of our own joined to this host by a veth pair with
//! private addresses (10.231.0.0/16, one /30 per namespace), to cut a node off the network
//! and heal it again. Needs root and `ip` (iproute2). Never touches an interface or a
//! namespace it did not create: everything is named `lcdn-<pid>-<n>` / `lc<n>h` and removed on
//! drop (and namespaces of test processes that died without dropping are swept at creation).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace with one end of a veth pair; the other end, on this host, carries `host_ip`.
pub struct Netns {
    pub name: String,
    /// The host's end of the veth pair (what [`cut`](Self::cut) takes down).
    pub host_if: String,
    /// This host's address on the link: processes in the namespace reach the host there.
    pub host_ip: Ipv4Addr,
    /// The namespace's address on the link: the host reaches processes in it there.
    pub ns_ip: Ipv4Addr,
}

/// Prefix of every namespace the harness creates.
const PREFIX: &str = "lcdn-";
/// /30 subnets available in 10.231.0.0/16.
const SUBNETS: u32 = 16384;

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// Deletes namespaces this harness made in test processes that no longer exist.
fn sweep_stale() {
    for line in ip_output(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !pid.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            // Deleting the namespace destroys its veth end, and with it the pair.
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Netns {
    /// Creates the namespace, the veth pair and the addresses, and brings everything up.
    /// Panics with a clear message when that is not possible (not root, no `ip`).
    pub fn create() -> Netns {
        crate::require("ip");
        sweep_stale();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let mut last = String::new();
        for _ in 0..8 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let index = (pid.wrapping_mul(31).wrapping_add(n * 7919)) % SUBNETS;
            let host_if = format!("lc{index}h");
            // An address or interface taken by a parallel run: try the next subnet.
            if !ip_output(&["link", "show", &host_if]).is_empty() {
                continue;
            }
            let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + index * 4;
            let (host_ip, ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
            if !ip_output(&["-o", "addr", "show", "to", &format!("{host_ip}/30")]).is_empty() {
                continue;
            }
            let ns = Netns {
                name: format!("{PREFIX}{pid}-{n}"),
                host_if,
                host_ip,
                ns_ip,
            };
            match ns.setup() {
                Ok(()) => return ns,
                Err(e) => last = e,
            }
        }
        panic!("cannot create a network namespace (the chaos tests run as root): {last}");
    }

    fn setup(&self) -> Result<(), String> {
        let ns_if = self.host_if.replace('h', "n");
        ip(&["netns", "add", &self.name])?;
        ip(&[
            "link",
            "add",
            &self.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &self.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.host_ip),
            "dev",
            &self.host_if,
        ])?;
        ip(&["link", "set", &self.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &self.name, "ip"];
            full.extend_from_slice(args);
            ip(&full)
        };
        inside(&["addr", "add", &format!("{}/30", self.ns_ip), "dev", &ns_if])?;
        inside(&["link", "set", &ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Partitions the namespace: takes the host's end of the link down (packets are dropped,
    /// no reset is sent; connections stall as they would behind a dead switch).
    pub fn cut(&self) {
        if let Err(e) = ip(&["link", "set", &self.host_if, "down"]) {
            panic!("partition: {e}");
        }
    }

    /// Heals the partition.
    pub fn heal(&self) {
        if let Err(e) = ip(&["link", "set", &self.host_if, "up"]) {
            panic!("heal: {e}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
