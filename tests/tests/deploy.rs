//! The deployment files in deploy/ work with the binaries they deploy: the Prometheus configs
//! and alert rules pass promtool, every metric the Grafana dashboard and the alerts query is
//! exported by a real origin and a real edge under real load, and the compose file, the
//! Kubernetes manifests, the systemd units and docs/operations.md parse and use only flags
//! and `LIVECDN_*` variables the binaries accept. Docker and Kubernetes are not run here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::etcd::Etcd;
use harness::{FfmpegPublisher, NodeProc, StreamSpec, binary, ffmpeg_play, require, wait_for};
use yaml_rust2::{Yaml, YamlLoader};

const ROLES: [&str; 2] = ["origin", "edge"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every document of a YAML file (JSON is YAML too).
fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// Files under `dir` (relative to the repo) whose names end with one of `exts`, recursively.
fn files_under(dir: &str, exts: &[&str]) -> Vec<String> {
    fn walk(root: &PathBuf, dir: &PathBuf, exts: &[&str], out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, exts, out);
            } else if exts
                .iter()
                .any(|x| p.to_string_lossy().ends_with(&format!(".{x}")))
            {
                let rel = p.strip_prefix(root).expect("under repo");
                out.push(rel.to_string_lossy().to_string());
            }
        }
    }
    let root = repo();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), exts, &mut out);
    out.sort();
    out
}

/// What a binary accepts, from its `--help`: long flags (aliases included) and variables.
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn accepts(bin: &str) -> Accepts {
    let out = Command::new(binary(bin))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{bin} --help failed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let flags = text
        .split(|c: char| c.is_whitespace() || c == '[' || c == ',')
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|f| !f.is_empty())
        .collect();
    let env = words_with_prefix(&text, "LIVECDN_", |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    });
    Accepts { flags, env }
}

/// Every `prefix...` word of `text` whose following characters satisfy `more`, not preceded
/// by an identifier character.
fn words_with_prefix(text: &str, prefix: &str, more: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest: String = text[i + prefix.len()..]
            .chars()
            .take_while(|c| more(*c))
            .collect();
        if rest.trim_end_matches('_').is_empty() {
            continue; // `LIVECDN_*` in prose
        }
        let word = format!("{prefix}{rest}");
        out.insert(word.trim_end_matches('_').to_string());
    }
    out
}

/// `livecdn_*` metric names mentioned in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    words_with_prefix(text, "livecdn_", |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
}

/// The long flag a command-line word sets (`--etcd=x` -> `etcd`), if it is one.
fn flag_of(word: &str) -> Option<String> {
    let f = word.strip_prefix("--")?;
    let f = f.split('=').next().unwrap_or_default();
    (!f.is_empty()).then(|| f.to_string())
}

/// `10s`, `500ms`, `2m` (the forms the deploy files use).
fn duration(s: &str) -> Duration {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(60 * n),
        _ => panic!("duration unit in {s:?}"),
    }
}

/// A YAML scalar as text (numbers and booleans included).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list of scalars (`command:` as a list, or a string split on whitespace).
fn words(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().filter_map(scalar).collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Checks a node command line (`origin --etcd=...`): the role and every flag. Returns the role.
fn check_command(where_: &str, cmd: &[String], accepted: &BTreeMap<&str, Accepts>) -> String {
    let role = cmd
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
        .unwrap_or_else(|| "origin".to_string()); // the image's CMD
    let acc = accepted
        .get(role.as_str())
        .unwrap_or_else(|| panic!("{where_}: runs {role:?}, not origin or edge"));
    for w in cmd.iter().skip(1) {
        if let Some(f) = flag_of(w) {
            assert!(
                acc.flags.contains(&f),
                "{where_}: `{role}` has no flag --{f} (see `{role} --help`)"
            );
        }
    }
    role
}

fn check_env(where_: &str, role: &str, name: &str, accepted: &BTreeMap<&str, Accepts>) {
    if name.starts_with("LIVECDN_") {
        assert!(
            accepted[role].env.contains(name),
            "{where_}: `{role}` reads no variable {name} (see `{role} --help`)"
        );
    }
}

fn all_accepts() -> BTreeMap<&'static str, Accepts> {
    ROLES.iter().map(|r| (*r, accepts(r))).collect()
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every string value under a key named `key`, anywhere in `y`.
fn values_of(y: &Yaml, key: &str, out: &mut Vec<String>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some(key)
                    && let Some(s) = v.as_str()
                {
                    out.push(s.to_string());
                }
                values_of(v, key, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| values_of(v, key, out)),
        _ => {}
    }
}

const DASHBOARD: &str = "deploy/grafana/livecdn-dashboard.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";

#[test]
fn prometheus_configs_and_alert_rules_pass_promtool() {
    require("promtool");
    for cfg in ["prometheus.yml", "prometheus.compose.yml"] {
        promtool(&["check", "config", &format!("deploy/prometheus/{cfg}")]);
    }
    promtool(&["check", "rules", ALERTS]);
    // Every alert says how bad it is and what it means, and waits before firing.
    let doc = &yaml_docs(ALERTS)[0];
    let mut alerts = 0;
    for group in doc["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            assert!(rule["for"].as_str().is_some(), "{name}: no `for:`");
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    rule["annotations"][a]
                        .as_str()
                        .is_some_and(|s| !s.trim().is_empty()),
                    "{name}: no {a} annotation"
                );
            }
        }
    }
    assert!(alerts >= 5, "only {alerts} alerts");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    require("promtool");
    let dash = &yaml_docs(DASHBOARD)[0];
    assert!(dash["schemaVersion"].as_i64().is_some(), "no schemaVersion");
    assert!(dash["uid"].as_str().is_some(), "no uid");
    // Every panel and query uses the datasource variable (provisioned uid `prometheus`).
    fn datasources(y: &Yaml, out: &mut Vec<String>) {
        match y {
            Yaml::Hash(h) => {
                for (k, v) in h {
                    if k.as_str() == Some("datasource")
                        && let Some(uid) = v["uid"].as_str()
                        && v["type"].as_str() == Some("prometheus")
                    {
                        out.push(uid.to_string());
                    }
                    datasources(v, out);
                }
            }
            Yaml::Array(a) => a.iter().for_each(|v| datasources(v, out)),
            _ => {}
        }
    }
    let mut uids = Vec::new();
    datasources(dash, &mut uids);
    assert!(!uids.is_empty());
    assert!(
        uids.iter().all(|u| u == "${datasource}"),
        "datasource uids: {uids:?}"
    );

    let mut exprs = Vec::new();
    values_of(dash, "expr", &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    // promtool parses PromQL in recording rules: one per query, template variables filled in.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        assert!(!e.contains('$'), "unknown template variable in {e}");
        let quoted = e.replace('\\', "\\\\").replace('"', "\\\"");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: \"{quoted}\"\n"
        ));
    }
    let path = std::env::temp_dir().join(format!("livecdn-dashboard-{}.yml", std::process::id()));
    std::fs::write(&path, rules).expect("write rules");
    promtool(&["check", "rules", path.to_str().expect("path")]);
    let _ = std::fs::remove_file(path);
}

/// Starts etcd, an origin and an edge, publishes with ffmpeg, plays from the edge over RTMP
/// and HTTP-FLV, and checks that every metric the dashboard and the alerts query is exported.
#[test]
fn every_queried_metric_is_exported_under_load() {
    let mut queried: BTreeMap<String, &str> = BTreeMap::new();
    for file in [DASHBOARD, ALERTS] {
        for m in metric_names(&read(file)) {
            queried.entry(m).or_insert(file);
        }
    }
    assert!(
        queried.len() >= 15,
        "only {} metrics queried",
        queried.len()
    );

    let etcd = Etcd::start();
    let origin = NodeProc::start(&["--etcd", &etcd.endpoint, "--load-interval", "1s"]);
    let edge = NodeProc::edge(&["--etcd", &etcd.endpoint, "--load-interval", "1s"]);
    let key = "live/deploy";
    let _publisher = FfmpegPublisher::start(
        &origin.rtmp_url(key),
        StreamSpec {
            seconds: 60,
            ..StreamSpec::default()
        },
    );
    wait_for("the origin to publish", Duration::from_secs(20), || {
        origin.metric("livecdn_media_streams_active", "published") >= 1.0
    });
    for url in [edge.rtmp_url(key), edge.flv_url(key)] {
        let mut played = ffmpeg_play(&url, 2, Duration::from_secs(30));
        for _ in 0..2 {
            if played.ok && played.video_frames > 0 {
                break;
            }
            played = ffmpeg_play(&url, 2, Duration::from_secs(30));
        }
        assert!(
            played.ok && played.video_frames > 0,
            "{url}: {}",
            played.stderr
        );
    }
    // Players gone: the first-frame histograms and the registry's are recorded.
    let mut exported = BTreeSet::new();
    for node in [&origin, &edge] {
        let (status, body) = node.http_get("/metrics");
        assert_eq!(status, 200, "{} /metrics", node.node_id);
        exported.extend(
            body.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| l.split(['{', ' ']).next())
                .map(str::to_string),
        );
    }
    let missing: Vec<String> = queried
        .iter()
        .filter(|(m, _)| !exported.contains(*m))
        .map(|(m, f)| format!("{m} (in {f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported by a loaded origin or edge: {missing:#?}\nexported: {exported:#?}"
    );
}

#[test]
fn compose_file_uses_real_options_and_files() {
    let accepted = all_accepts();
    let doc = &yaml_docs("deploy/compose.yaml")[0];
    let services = doc["services"].as_hash().expect("services");
    let mut roles = BTreeSet::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service name");
        // Host paths mounted into containers exist (relative to deploy/).
        for v in svc["volumes"].as_vec().into_iter().flatten() {
            let v = v.as_str().expect("short volume syntax");
            if let Some(src) = v.split(':').next().filter(|s| s.starts_with("./")) {
                assert!(
                    repo().join("deploy").join(src).exists(),
                    "{name}: mounts missing {src}"
                );
            }
        }
        let livecdn = !svc["build"].is_badvalue()
            || svc["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("livecdn"));
        if !livecdn {
            continue;
        }
        if !svc["build"].is_badvalue() {
            let dockerfile = svc["build"]["dockerfile"].as_str().expect("dockerfile");
            let context = svc["build"]["context"].as_str().expect("context");
            assert!(
                repo()
                    .join("deploy")
                    .join(context)
                    .join(dockerfile)
                    .exists(),
                "{name}: no {context}/{dockerfile}"
            );
        }
        let cmd = words(&svc["command"]);
        let role = check_command(&format!("compose {name}"), &cmd, &accepted);
        match &svc["environment"] {
            Yaml::Hash(h) => {
                for k in h.keys() {
                    check_env(
                        &format!("compose {name}"),
                        &role,
                        k.as_str().expect("env name"),
                        &accepted,
                    );
                }
            }
            Yaml::Array(a) => {
                for kv in a.iter().filter_map(Yaml::as_str) {
                    let k = kv.split('=').next().unwrap_or_default();
                    check_env(&format!("compose {name}"), &role, k, &accepted);
                }
            }
            _ => {}
        }
        roles.insert(role);
    }
    assert_eq!(
        roles,
        BTreeSet::from(["origin".to_string(), "edge".to_string()])
    );
    // Prometheus in compose reads a config that exists next to its rules.
    let prom = words(&services[&Yaml::String("prometheus".into())]["command"]);
    let cfg = prom
        .iter()
        .find_map(|w| w.strip_prefix("--config.file=/etc/prometheus/"))
        .expect("prometheus --config.file under /etc/prometheus");
    assert!(repo().join("deploy/prometheus").join(cfg).exists(), "{cfg}");
}

#[test]
fn kubernetes_manifests_use_real_options_and_match_up() {
    let accepted = all_accepts();
    let mut docs = Vec::new();
    for file in files_under("deploy/kubernetes", &["yaml", "yml"]) {
        for d in yaml_docs(&file) {
            if !d.is_null() {
                docs.push((file.clone(), d));
            }
        }
    }
    let mut template_labels = Vec::new();
    let mut roles = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for (file, d) in &docs {
        let kind = d["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        let name = d["metadata"]["name"].as_str().expect("metadata.name");
        assert!(d["apiVersion"].as_str().is_some(), "{file} {kind}/{name}");
        if kind != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"].as_str(),
                Some("livecdn"),
                "{file} {kind}/{name}: namespace"
            );
        }
        kinds.insert(kind.to_string());
        let pod = &d["spec"]["template"];
        if pod.is_badvalue() {
            continue;
        }
        let labels = pod["metadata"]["labels"]
            .as_hash()
            .expect("template labels");
        for (k, v) in d["spec"]["selector"]["matchLabels"]
            .as_hash()
            .expect("matchLabels")
        {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{file} {name}: selector vs template"
            );
        }
        template_labels.push(labels.clone());
        let spec = &pod["spec"];
        for c in spec["containers"].as_vec().expect("containers") {
            let mut cmd = words(&c["command"]);
            let where_ = format!("{file} {name}");
            if !cmd
                .first()
                .is_some_and(|c| ROLES.contains(&c.rsplit('/').next().unwrap_or(c)))
            {
                continue; // etcd
            }
            cmd.extend(words(&c["args"]));
            let role = check_command(&where_, &cmd, &accepted);
            let mut defined = BTreeSet::new();
            let mut grace = Duration::from_secs(5);
            for e in c["env"].as_vec().into_iter().flatten() {
                let var = e["name"].as_str().expect("env name");
                check_env(&where_, &role, var, &accepted);
                if let Some(v) = e["value"].as_str() {
                    // Kubernetes only expands $(VAR) of variables defined before.
                    for r in v.split("$(").skip(1) {
                        let r = r.split(')').next().unwrap_or_default();
                        assert!(
                            defined.contains(r),
                            "{where_}: {var} uses $({r}) before it is defined"
                        );
                    }
                    if var == "LIVECDN_SHUTDOWN_GRACE" {
                        grace = duration(v);
                    }
                }
                defined.insert(var.to_string());
            }
            let pre_stop = words(&c["lifecycle"]["preStop"]["exec"]["command"]);
            let pre_stop = match pre_stop.as_slice() {
                [s, n] if s == "sleep" => duration(n),
                _ => Duration::ZERO,
            };
            let termination = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            assert!(
                Duration::from_secs(termination as u64) > grace + pre_stop,
                "{where_}: terminationGracePeriodSeconds {termination} <= preStop + shutdown grace"
            );
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
                assert_eq!(
                    c[probe]["httpGet"]["path"].as_str(),
                    Some(path),
                    "{where_}: {probe}"
                );
            }
            roles.insert(role);
        }
    }
    assert_eq!(
        roles,
        BTreeSet::from(["origin".to_string(), "edge".to_string()])
    );
    for k in [
        "Namespace",
        "StatefulSet",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/kubernetes");
    }
    // Services and disruption budgets select pods that exist; the autoscaler targets one.
    for (file, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let selector = match kind {
            "Service" => &d["spec"]["selector"],
            "PodDisruptionBudget" => &d["spec"]["selector"]["matchLabels"],
            "HorizontalPodAutoscaler" => {
                let target = d["spec"]["scaleTargetRef"]["name"].as_str();
                assert!(
                    docs.iter().any(|(_, o)| o["kind"].as_str()
                        == d["spec"]["scaleTargetRef"]["kind"].as_str()
                        && o["metadata"]["name"].as_str() == target),
                    "{file}: HPA target {target:?} missing"
                );
                continue;
            }
            _ => continue,
        };
        let selector = selector.as_hash().expect("selector");
        assert!(
            template_labels
                .iter()
                .any(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v))),
            "{file} {kind}/{name}: selects no pod template"
        );
    }
}

#[test]
fn systemd_units_and_env_file_use_real_options() {
    let accepted = all_accepts();
    for role in ROLES {
        let file = format!("deploy/systemd/livecdn-{role}.service");
        let unit = read(&file);
        let get = |key: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{file}: no {key}="))
                .trim()
                .to_string()
        };
        let exec: Vec<String> = get("ExecStart")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(check_command(&file, &exec, &accepted), role);
        assert!(exec.iter().any(|w| w == "--config"), "{file}: no --config");
        assert_eq!(get("Restart"), "on-failure");
        assert_eq!(get("KillSignal"), "SIGTERM");
        assert!(get("User") != "root", "{file}: runs as root");
        // Above the default shutdown_grace (5s) and the env file's example.
        assert!(duration(&get("TimeoutStopSec")) > Duration::from_secs(5));
        assert!(get("LimitNOFILE").parse::<u64>().expect("LimitNOFILE") >= 65536);
        for var in words_with_prefix(&unit, "LIVECDN_", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        }) {
            check_env(&file, role, &var, &accepted);
        }
    }
    let env = read("deploy/systemd/livecdn.env.example");
    let known: BTreeSet<&String> = accepted.values().flat_map(|a| &a.env).collect();
    for var in words_with_prefix(&env, "LIVECDN_", |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    }) {
        assert!(known.contains(&var), "livecdn.env.example: unknown {var}");
    }
}

#[test]
fn operations_guide_uses_real_options() {
    let accepted = all_accepts();
    let doc = read("docs/operations.md");
    let known: BTreeSet<&String> = accepted.values().flat_map(|a| &a.env).collect();
    for var in words_with_prefix(&doc, "LIVECDN_", |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    }) {
        assert!(known.contains(&var), "docs/operations.md: unknown {var}");
    }
    // Command lines that run a node: the flags after `origin` / `edge` exist.
    let joined = doc.replace("\\\n", " ");
    let mut commands = 0;
    for line in joined.lines() {
        for part in line.split(['|', ';', '`']).flat_map(|p| p.split("&&")) {
            let words: Vec<&str> = part.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                // `origin`, `/usr/local/bin/origin`, `target/release/origin`; not
                // `deployment/edge` (kubectl).
                let base = w.rsplit('/').next().unwrap_or(w);
                let binary = *w == base
                    || ["bin/", "release/", "debug/"]
                        .iter()
                        .any(|d| w.ends_with(&format!("{d}{base}")));
                if ROLES.contains(&base)
                    && binary
                    && words.get(i + 1).is_some_and(|n| n.starts_with("--"))
                {
                    let cmd: Vec<String> = words[i..]
                        .iter()
                        .take_while(|w| !w.starts_with('#'))
                        .map(|w| w.to_string())
                        .collect();
                    let mut cmd = cmd;
                    cmd[0] = base.to_string();
                    check_command("docs/operations.md", &cmd, &accepted);
                    commands += 1;
                }
            }
        }
    }
    assert!(
        commands >= 2,
        "found only {commands} node command lines in the guide"
    );
}
