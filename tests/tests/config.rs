//! The example configs in deploy/ load in the real binaries and document every option; bad
//! configs stop a binary at start with a message naming the key.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use harness::etcd::Etcd;
use harness::{NodeProc, binary};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Long flags a binary's --help lists (minus help/version/config).
fn flags(bin: &str) -> BTreeSet<String> {
    let out = Command::new(binary(bin))
        .arg("--help")
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Aliases (`[alias: --etcd-endpoints]`) name the same option.
    let text: String = text
        .lines()
        .map(|l| l.split("[alias").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .split(['=', ' ', '<'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|f| !f.is_empty() && !["help", "version", "config"].contains(&f.as_str()))
        .collect()
}

/// Flags the keys of a TOML file stand for (`[a] b_c` -> `a-b-c`).
fn file_flags(path: &PathBuf) -> BTreeSet<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}-{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&key, t, out),
                _ => {
                    out.insert(key.replace('_', "-"));
                }
            }
        }
    }
    let text = std::fs::read_to_string(path).expect("read example");
    // Commented-out keys count as documented.
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| r.contains(" = "))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = uncommented.parse().expect("example is TOML");
    let mut out = BTreeSet::new();
    walk("", &table, &mut out);
    // `[etcd] endpoints` is the alias of `--etcd`.
    if out.remove("etcd-endpoints") {
        out.insert("etcd".to_string());
    }
    out
}

#[test]
fn example_configs_document_every_option() {
    for bin in ["origin", "edge"] {
        let documented = file_flags(&repo_file(&format!("deploy/{bin}.example.toml")));
        let options = flags(bin);
        let missing: Vec<_> = options.difference(&documented).collect();
        assert!(missing.is_empty(), "{bin}.example.toml lacks {missing:?}");
        let unknown: Vec<_> = documented.difference(&options).collect();
        assert!(
            unknown.is_empty(),
            "{bin}.example.toml has unknown keys {unknown:?}"
        );
    }
}

#[test]
fn example_configs_load_in_the_binaries() {
    let origin_cfg = repo_file("deploy/origin.example.toml");
    let o = NodeProc::start(&["--config", origin_cfg.to_str().expect("path")]);
    assert_eq!(o.http_get("/healthz").0, 200);
    let etcd = Etcd::start();
    let edge_cfg = repo_file("deploy/edge.example.toml");
    let e = NodeProc::edge(&[
        "--config",
        edge_cfg.to_str().expect("path"),
        "--etcd",
        &etcd.endpoint,
    ]);
    assert_eq!(e.http_get("/healthz").0, 200);
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("livecdn-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (content, key) in [
        ("[media]\nqueue_max_ms = \"soon\"\n", "--media-queue-max-ms"),
        ("[rtmp]\nlisen = \"0.0.0.0:1\"\n", "rtmp.lisen"),
        ("[edge]\nidle_grace = \"5 weeks\"\n", "--edge-idle-grace"),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, content).expect("write");
        let out = Command::new(binary("edge"))
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run edge");
        assert!(!out.status.success(), "edge accepted {content}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "error for {content:?} does not name {key}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_control_api_off_loopback_needs_a_token() {
    let port = |p: u16| format!("127.0.0.1:{p}");
    let out = Command::new(binary("origin"))
        .args(["--rtmp-listen", &port(harness::free_port())])
        .args(["--http-listen", &port(harness::free_port())])
        .args(["--api-listen", &format!("0.0.0.0:{}", harness::free_port())])
        .output()
        .expect("run origin");
    assert!(
        !out.status.success(),
        "origin started a public API without a token"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--api-listen") && err.contains("--api-token"),
        "{err}"
    );
    // With a token file it starts (and answers reads without the token).
    let dir = std::env::temp_dir().join(format!("livecdn-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("token");
    std::fs::write(&file, "t0ken\n").expect("write");
    let node = NodeProc::start(&["--api-token-file", &file.to_string_lossy()]);
    assert_eq!(node.api_get("/api/v1/streams").0, 200);
    let _ = std::fs::remove_dir_all(dir);
}
