//! CPU time and resident memory of processes from /proc/PID/stat and /proc/PID/status.

use std::sync::OnceLock;

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, 100 on Linux).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|v: &f64| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime of the whole process (all threads), in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let utime: f64 = f.nth(11)?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// utime + stime of each thread of a process, in seconds, by thread id.
pub fn thread_cpu_seconds(pid: &str) -> Vec<(String, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_string_lossy().to_string();
            Some((tid.clone(), cpu_seconds(&format!("{pid}/task/{tid}"))?))
        })
        .collect()
}

/// Resident set size in MiB (VmRSS).
pub fn rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// (busy, total) CPU time in seconds of the whole machine (summed over CPUs, first entry)
/// and of each CPU (`cpuN`, then in order), from /proc/stat; iowait counts as idle. Busy time
/// includes interrupt and softirq time, which the kernel charges to no process.
pub fn cpu_times() -> Vec<(f64, f64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|line| {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is in user already).
            let total: f64 = v.iter().take(8).sum();
            let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
            Some(((total - idle) / clk_tck(), total / clk_tck()))
        })
        .collect()
}

/// (name, pid) of the kernel's softirq threads (`ksoftirqd/N`): softirq work the kernel
/// defers under load runs there, charged to no server process.
pub fn ksoftirqd() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().to_string();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let name = comm(&pid)?;
            name.starts_with("ksoftirqd/").then_some((name, pid))
        })
        .collect();
    found.sort();
    found
}

/// (bytes, files) of the regular files under `path` (two levels deep).
pub fn dir_size(path: &str) -> Option<(u64, u64)> {
    fn walk(dir: &std::path::Path, depth: u32, acc: &mut (u64, u64)) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_file() {
                acc.0 += meta.len();
                acc.1 += 1;
            } else if meta.is_dir() && depth > 0 {
                walk(&e.path(), depth - 1, acc);
            }
        }
    }
    let root = std::path::Path::new(path);
    if !root.is_dir() {
        return None;
    }
    let mut acc = (0, 0);
    walk(root, 1, &mut acc);
    Some(acc)
}

/// Command name (`comm`).
pub fn comm(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while busy.elapsed().as_millis() < 50 {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_seconds("self").is_some_and(|s| s > 0.0));
        assert!(!thread_cpu_seconds("self").is_empty());
        assert!(rss_mib("self").is_some_and(|m| m > 0.5));
        assert!(comm("self").is_some());
        let (bytes, files) = dir_size(env!("CARGO_MANIFEST_DIR")).expect("bench/ exists");
        assert!(bytes > 1000 && files > 3, "{bytes} {files}");
        assert_eq!(dir_size("/nonexistent/dir"), None);
        let t = cpu_times();
        assert!(t.len() >= 2, "machine plus at least one cpu");
        assert!(t.iter().all(|(busy, total)| *busy > 0.0 && total >= busy));
    }
}
