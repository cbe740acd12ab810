//! The README's commands install what they use: every program the tests spawn (`Command::new`,
//! `require`) is named by `need` in tests/run.sh, every program the local cluster command needs
//! is too (the quick-start test runs it), and deploy/local/deps.sh knows each one's package.
//! Without this, a program installed here by hand makes CI green while a new machine fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// String literals right after each `pattern` in `text` (e.g. `Command::new("` -> program).
fn literals_after(text: &str, pattern: &str) -> Vec<String> {
    text.match_indices(pattern)
        .filter_map(|(i, _)| {
            let rest = &text[i + pattern.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        })
        .collect()
}

/// The tools named by `need` lines of a shell script.
fn needed(script: &str) -> BTreeSet<String> {
    read(&root().join(script))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("need "))
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_program_the_tests_spawn_is_installed_by_the_test_command() {
    let mut files = Vec::new();
    for dir in ["tests/src", "tests/tests", "bench/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut spawned = BTreeSet::new();
    for f in files.iter().filter(|f| !f.ends_with("deps.rs")) {
        let text = read(f);
        for pattern in ["Command::new(\"", "require(\""] {
            spawned.extend(literals_after(&text, pattern));
        }
    }
    // Our own binaries are spawned through `binary(...)`, never by a bare name.
    assert!(
        spawned.contains("ffmpeg") && spawned.contains("etcd"),
        "scan found {spawned:?}"
    );

    let test_needs = needed("tests/run.sh");
    let missing: Vec<_> = spawned.difference(&test_needs).collect();
    assert!(
        missing.is_empty(),
        "tests spawn {missing:?}, which tests/run.sh does not `need` (add them there and to deploy/local/deps.sh)"
    );
    let cluster_needs = needed("deploy/local/cluster.sh");
    let missing: Vec<_> = cluster_needs.difference(&test_needs).collect();
    assert!(
        missing.is_empty(),
        "the quick-start test runs cluster.sh, which needs {missing:?}: tests/run.sh must `need` them too"
    );

    let table = read(&root().join("deploy/local/deps.sh"));
    for tool in test_needs.union(&cluster_needs) {
        assert!(
            table.contains(&format!("[{tool}]=")),
            "deploy/local/deps.sh has no package for {tool}"
        );
    }
}
