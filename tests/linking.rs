//! A backend registered in a library crate of someone else's (`tests/outsider/`, outside the
//! workspace) never vanishes silently: a binary that does not reference the crate loses it at
//! link time and says why and how to fix it; one that follows the fix, or adds the backend by
//! its descriptor, serves it.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{get, Spawn};

/// Builds the binaries of `tests/outsider/` into this test's target directory (the same one
/// `tests/embedding.rs` uses for `tests/embedder/`, whose dependencies they share) and returns
/// the path of `bin`.
fn outsider(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let target = exe.ancestors().nth(3).expect("the target directory");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/outsider/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--bins",
            "--manifest-path",
            manifest,
            "--target-dir",
        ])
        .arg(target)
        .output()
        .expect("run cargo build for tests/outsider");
    assert!(
        out.status.success(),
        "building tests/outsider failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = target
        .join("debug")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The names `--list-backends` prints.
fn listed(bin: &PathBuf) -> Vec<String> {
    let out = Spawn::new()
        .program(bin)
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(out.code(), Some(0), "{out:?}");
    out.stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_unreferenced_backend_crate_is_named_as_the_likely_cause_with_the_fix() {
    let bin = outsider("outsider-unreferenced");
    assert_eq!(listed(&bin), ["memory", "nop"], "the linker dropped `dash`");

    let out = Spawn::new()
        .program(&bin)
        .args(["--cache", "dash"])
        .run_to_exit();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(
        line.starts_with(
            "outsider-unreferenced: error: unknown backend `dash`; available: memory, nop"
        ),
        "the binary's own name, then the name asked for: {line}"
    );
    assert!(
        line.contains("must be referenced by the binary: `use that_crate as _;`"),
        "names the fix: {line}"
    );

    // Named unlike its package (`fibcache-outsider`), the binary uses its own name throughout.
    let help = Spawn::new().program(&bin).arg("--help").run_to_exit();
    assert!(
        help.stdout.contains("Usage: outsider-unreferenced"),
        "{}",
        help.stdout
    );
    let completions = Spawn::new()
        .program(&bin)
        .args(["--completions", "bash"])
        .run_to_exit();
    assert!(
        completions
            .stdout
            .contains("-o default outsider-unreferenced"),
        "{}",
        completions.stdout
    );
}

#[tokio::test]
async fn a_referenced_or_explicitly_added_backend_crate_is_served() {
    for bin in ["outsider-referenced", "outsider-explicit"] {
        let bin = outsider(bin);
        assert_eq!(listed(&bin), ["dash", "memory", "nop"], "{}", bin.display());
        let list = Spawn::new()
            .program(&bin)
            .arg("--list-backends")
            .run_to_exit();
        assert!(
            list.stdout.contains("static:fibcache-outsider"),
            "{}",
            list.stdout
        );

        let server = Spawn::new().program(&bin).args(["--cache", "dash"]).start();
        let first = get(server.addr, "/fib/20").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("x-cache"), Some("miss"));
        let second = get(server.addr, "/fib/20").await;
        assert_eq!(second.body, r#"{"result":6765}"#);
        assert_eq!(second.header("x-cache"), Some("hit"), "served from `dash`");
    }
}
