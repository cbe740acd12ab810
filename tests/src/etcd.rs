//! Test harness: a real single-member etcd (Debian's etcd-server) on free loopback ports with a
//! temporary data dir, which tests can stop and restart. Never touches a system etcd.

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
    /// A node of `binary` (origin or edge) registered here with a 2 s lease and 1 s load
    /// updates, plus `extra` flags.
    pub fn node(&self, binary: &str, extra: &[&str]) -> crate::NodeProc {
        let mut args = vec![
            "--etcd",
            &self.endpoint,
            "--etcd-lease-ttl",
            "2s",
            "--load-interval",
            "1s",
        ];
        args.extend_from_slice(extra);
        crate::NodeProc::spawn(binary, &args)
    }
}
