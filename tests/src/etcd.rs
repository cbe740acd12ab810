//! Test harness: a real single-member etcd (Debian's etcd-server) on free loopback ports with a
//! temporary data dir, which tests can stop and restart; and a real 3-member cluster
//! ([`EtcdCluster`]) whose members (the leader, say) tests can kill. Never touches a system
//! etcd.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Proc, free_port, require};

/// How long etcd may take to answer its first health check.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts with fresh ports if etcd cannot start (a port was taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// A running etcd, killed and its data dir removed on drop.
pub struct Etcd {
    /// Client URL, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    client: SocketAddr,
    peer_port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

/// A test node's flags: `endpoints`, a 2 s lease (unless `extra` sets one), 1 s load updates,
/// then `extra`.
fn node_args<'a>(endpoints: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--etcd", endpoints, "--load-interval", "1s"];
    if !extra.contains(&"--etcd-lease-ttl") {
        args.extend(["--etcd-lease-ttl", "2s"]);
    }
    args.extend_from_slice(extra);
    args
}

impl Etcd {
    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> Etcd {
        require("etcd");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let client_port = free_port();
            let peer_port = free_port();
            let client: SocketAddr = ([127, 0, 0, 1], client_port).into();
            let dir = std::env::temp_dir()
                .join(format!("livecdn-etcd-{}-{client_port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut etcd = Etcd {
                endpoint: format!("http://{client}"),
                client,
                peer_port,
                dir,
                proc: None,
            };
            match etcd.launch() {
                Ok(()) => return etcd,
                Err(out) => last = out,
            }
        }
        panic!("etcd did not start after {START_ATTEMPTS} attempts; last output:\n{last}");
    }

    /// Kills etcd (SIGKILL, like a crash) and waits for it to exit. Data is kept.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(out) = self.launch() {
            panic!("etcd did not restart:\n{out}");
        }
    }

    /// Whether etcd answers `/health` with `"health":"true"` right now.
    pub fn is_healthy(&self) -> bool {
        healthy(self.client)
    }

    fn launch(&mut self) -> Result<(), String> {
        let client_url = self.endpoint.clone();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("livecdn-test")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("livecdn-test={peer_url}"))
            .args(["--heartbeat-interval", "10", "--election-timeout", "50"])
            .args(["--logger", "zap", "--log-level", "warn"]);
        let mut proc = Proc::spawn("etcd", &mut cmd);
        let end = Instant::now() + START_DEADLINE;
        while Instant::now() < end {
            if !proc.is_running() {
                return Err(proc.output());
            }
            if healthy(self.client) {
                self.proc = Some(proc);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no healthy answer within {START_DEADLINE:?}\n{}",
            proc.output()
        ))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET /health on the client port, every step bounded.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    if write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).contains("\"health\":\"true\"")
}

impl Etcd {
    /// A node of `binary` (origin or edge) registered here with a 2 s lease (unless `extra`
    /// sets one) and 1 s load updates, plus `extra` flags.
    pub fn node(&self, binary: &str, extra: &[&str]) -> crate::NodeProc {
        crate::NodeProc::spawn(binary, &node_args(&self.endpoint, extra))
    }
}

/// Timing of the 3-member cluster: looser than the single member's, so that a loaded
/// machine does not trigger elections by itself, tight enough that a lost leader is
/// replaced within about a second.
const CLUSTER_TIMING: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

/// One member of an [`EtcdCluster`].
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    dir: PathBuf,
    proc: Option<Proc>,
}

/// A real 3-member etcd cluster: clients on `ip` (loopback, or an address a network
/// namespace reaches), peers on loopback. Every member is killed and its data dir removed
/// on drop; members can be killed (SIGKILL) one by one, the leader found.
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Three members with clients on 127.0.0.1.
    pub fn start() -> EtcdCluster {
        Self::start_on([127, 0, 0, 1].into())
    }

    /// Three members with clients on `ip`; waits until every member is healthy (which
    /// means a leader was elected).
    pub fn start_on(ip: std::net::IpAddr) -> EtcdCluster {
        require("etcd");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = EtcdCluster {
                members: (0..3)
                    .map(|i| {
                        let client = SocketAddr::new(ip, free_port());
                        let peer: SocketAddr = ([127, 0, 0, 1], free_port()).into();
                        let name = format!("m{i}-{}", client.port());
                        let dir = std::env::temp_dir().join(format!(
                            "livecdn-etcd-{}-{}",
                            std::process::id(),
                            client.port()
                        ));
                        let _ = std::fs::remove_dir_all(&dir);
                        Member {
                            name,
                            client,
                            peer,
                            dir,
                            proc: None,
                        }
                    })
                    .collect(),
            };
            let initial: Vec<String> = cluster
                .members
                .iter()
                .map(|m| format!("{}=http://{}", m.name, m.peer))
                .collect();
            let token = format!("livecdn-{}", cluster.members[0].client.port());
            for m in &mut cluster.members {
                let client_url = format!("http://{}", m.client);
                let peer_url = format!("http://{}", m.peer);
                let mut cmd = Command::new("etcd");
                cmd.arg("--name")
                    .arg(&m.name)
                    .arg("--data-dir")
                    .arg(&m.dir)
                    .arg("--listen-client-urls")
                    .arg(&client_url)
                    .arg("--advertise-client-urls")
                    .arg(&client_url)
                    .arg("--listen-peer-urls")
                    .arg(&peer_url)
                    .arg("--initial-advertise-peer-urls")
                    .arg(&peer_url)
                    .arg("--initial-cluster")
                    .arg(initial.join(","))
                    .args(["--initial-cluster-state", "new"])
                    .arg("--initial-cluster-token")
                    .arg(&token)
                    .args(CLUSTER_TIMING)
                    .args(["--logger", "zap", "--log-level", "warn"]);
                m.proc = Some(Proc::spawn("etcd", &mut cmd));
            }
            let end = Instant::now() + START_DEADLINE;
            loop {
                if let Some(dead) = cluster
                    .members
                    .iter_mut()
                    .filter_map(|m| m.proc.as_mut())
                    .find_map(|p| (!p.is_running()).then(|| p.output()))
                {
                    last = dead;
                    break;
                }
                if cluster.members.iter().all(|m| healthy(m.client)) {
                    return cluster;
                }
                if Instant::now() >= end {
                    last = format!("not healthy within {START_DEADLINE:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("etcd cluster did not start after {START_ATTEMPTS} attempts; last:\n{last}");
    }

    /// Client URLs of every member, comma-separated (what `--etcd` takes).
    pub fn endpoints(&self) -> String {
        self.endpoint_list().join(",")
    }

    /// Client URLs of the members still running.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.proc.is_some())
            .map(|m| format!("http://{}", m.client))
            .collect()
    }

    /// Index of the member that is leader, as running members report it (`None` while
    /// there is none, or the members disagree).
    pub fn leader(&self) -> Option<usize> {
        let mut leader_id = None;
        let mut ids = Vec::new();
        for m in &self.members {
            if m.proc.is_none() {
                ids.push(None);
                continue;
            }
            let status = maintenance_status(m.client)?;
            let id = status["header"]["member_id"].as_str()?.to_string();
            let leader = status["leader"].as_str()?.to_string();
            if leader_id.get_or_insert_with(|| leader.clone()) != &leader {
                return None;
            }
            ids.push(Some(id));
        }
        let leader = leader_id?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// Kills member `i` (SIGKILL, like a crash); its data dir stays until drop.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members.get_mut(i).and_then(|m| m.proc.take()) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.proc.as_ref().map(Proc::pid))
            .collect()
    }

    /// A node of `binary` (origin or edge) registered with every member, with a 2 s lease
    /// and 1 s load updates, plus `extra` flags; listening on loopback.
    pub fn node(&self, binary: &str, extra: &[&str]) -> crate::NodeProc {
        self.node_in(binary, [127, 0, 0, 1].into(), &[], extra)
    }

    /// [`node`](Self::node) listening on `bind`, run through `prefix` (e.g.
    /// `ip netns exec NS`).
    pub fn node_in(
        &self,
        binary: &str,
        bind: std::net::IpAddr,
        prefix: &[&str],
        extra: &[&str],
    ) -> crate::NodeProc {
        let endpoints = self.endpoints();
        crate::NodeProc::spawn_in(binary, bind, prefix, &node_args(&endpoints, extra))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        for m in &self.members {
            let _ = std::fs::remove_dir_all(&m.dir);
        }
    }
}

/// POST /v3/maintenance/status (the gRPC gateway) on a client port: the member's id and
/// the leader's, as JSON. Every step bounded.
fn maintenance_status(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "POST /v3/maintenance/status HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (_, body) = text.split_once("\r\n\r\n")?;
    // The gateway may answer chunked: the JSON object is between the outer braces.
    let body = &body[body.find('{')?..=body.rfind('}')?];
    serde_json::from_str(body).ok()
}
