//! registry-sim's etcd: three members on loopback ports from the kernel, data in a temp dir,
//! killed and removed on drop (also on panic); their Prometheus metrics. Generates no load.

use super::*;

/// Three etcd members on loopback; killed and their data removed on drop (also on panic).
pub(crate) struct Cluster {
    pub(crate) children: Vec<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) endpoints: Vec<String>,
}

impl Cluster {
    pub(crate) fn start(bin: &Path, root: &Path, tag: usize) -> anyhow::Result<Cluster> {
        let dir = root.join(format!("livecdn-registry-sim-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // Ports from the kernel, held until all six are known.
        let listeners: Vec<std::net::TcpListener> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("free ports")?;
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .context("free ports")?;
        drop(listeners);
        let client = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial = (0..3)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            children: Vec::new(),
            dir: dir.clone(),
            endpoints: (0..3).map(client).collect(),
        };
        for i in 0..3 {
            let log = std::fs::File::create(dir.join(format!("m{i}.log"))).context("etcd log")?;
            let child = Command::new(bin)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &client(i)])
                .args(["--advertise-client-urls", &client(i)])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("sim-{tag}")])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {}", bin.display()))?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    pub(crate) fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }

    /// Waits until every member answers and knows a leader.
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for ep in &self.endpoints {
            loop {
                let ok = async {
                    let mut c = Client::connect([ep.as_str()], None).await.ok()?;
                    let s = c.status().await.ok()?;
                    (s.leader() != 0).then_some(())
                };
                if timeout(OP_TIMEOUT, ok).await.ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    // The directory goes with the guard: show the logs' ends now.
                    let logs: Vec<String> = (0..3)
                        .filter_map(|i| {
                            std::fs::read_to_string(self.dir.join(format!("m{i}.log"))).ok()
                        })
                        .map(|l| l.lines().rev().take(3).collect::<Vec<_>>().join("\n"))
                        .collect();
                    bail!(
                        "etcd {ep} not ready after 30 s; logs end:\n{}",
                        logs.join("\n")
                    );
                }
                sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// etcd's Prometheus metrics (summed over label sets), from its client URL.
pub(crate) async fn scrape(endpoint: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Some(host) = endpoint.strip_prefix("http://") else {
        return out;
    };
    let body = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    let Ok(Some(text)) = timeout(Duration::from_secs(5), body).await else {
        return out;
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// Peak resident set size in MiB (VmHWM).
pub(crate) fn hwm_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn etcd_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "etcd".to_string())
}
