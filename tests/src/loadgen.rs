//! Test harness: the built `loadgen` (bench/) as a child process, optionally inside a network
//! namespace: started with its flags, waited for until its measuring window opens (so that
//! a test can time events into the window), then its JSON report read back.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Proc, binary, free_port};

/// A running loadgen writing its report to a temporary file.
pub struct Loadgen {
    proc: Proc,
    json: PathBuf,
}

/// What loadgen prints on stderr when its window opens, followed by the Unix ms.
const MEASURING: &str = "loadgen: measuring from unix_ms=";

impl Loadgen {
    /// Starts `loadgen ARGS --json FILE`, through `prefix` (e.g. `ip netns exec NS`) if any.
    pub fn start(prefix: &[&str], args: &[String]) -> Loadgen {
        let json = std::env::temp_dir().join(format!(
            "livecdn-loadgen-{}-{}.json",
            std::process::id(),
            free_port()
        ));
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary("loadgen"));
                c
            }
            None => Command::new(binary("loadgen")),
        };
        cmd.args(args).arg("--json").arg(&json);
        Loadgen {
            proc: Proc::spawn("loadgen", &mut cmd),
            json,
        }
    }

    /// Waits until the measuring window opens (at most `within`); its start, Unix ms.
    pub fn wait_measuring(&mut self, within: Duration) -> u64 {
        let end = Instant::now() + within;
        loop {
            let out = self.proc.output();
            if let Some(ms) = out
                .split_once(MEASURING)
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            {
                return ms;
            }
            assert!(
                self.proc.is_running(),
                "loadgen exited before measuring:\n{out}"
            );
            assert!(
                Instant::now() < end,
                "loadgen not measuring after {within:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `within`) for loadgen to exit successfully; its report.
    pub fn finish(mut self, within: Duration) -> serde_json::Value {
        let end = Instant::now() + within;
        let status = loop {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "loadgen still running after {within:?}:\n{}",
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.proc.output();
        assert!(status.success(), "loadgen failed ({status}):\n{out}");
        let text = std::fs::read_to_string(&self.json).expect("loadgen wrote its report");
        eprintln!("{out}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad report ({e}):\n{text}"))
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.json);
    }
}
