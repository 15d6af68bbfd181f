//! fibcache as a library: a crate that depends on `fibcache-server` keeps the `memory` backend
//! and its own name, and the HTTP app nests in an axum application with every per-request
//! behaviour.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{examples, get, json, Spawn};

/// The `fibcache-embedder` binary of `tests/embedder/` (a crate outside the workspace that
/// depends on `fibcache-server` with default features), built into this test's target
/// directory on first use.
fn embedder() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let target = exe.ancestors().nth(3).expect("the target directory");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/embedder/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--manifest-path", manifest, "--target-dir"])
        .arg(target)
        .output()
        .expect("run cargo build for tests/embedder");
    assert!(
        out.status.success(),
        "building tests/embedder failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target
        .join("debug")
        .join(format!("fibcache-embedder{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

#[test]
fn a_crate_that_depends_on_the_server_keeps_memory_and_its_own_name() {
    let bin = embedder();

    let list = Spawn::new()
        .program(&bin)
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(list.code(), Some(0), "{list:?}");
    let names: Vec<&str> = list
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, ["memory", "nop"], "{}", list.stdout);

    let version = Spawn::new().program(&bin).arg("--version").run_to_exit();
    assert_eq!(version.code(), Some(0), "{version:?}");
    assert_eq!(version.stdout.trim(), "fibcache-embedder 0.0.1 (memory)");

    let help = Spawn::new().program(&bin).arg("--help").run_to_exit();
    assert_eq!(help.code(), Some(0), "{help:?}");
    assert!(
        help.stdout
            .starts_with("Someone else's service, serving fibcache under its own name"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("Usage: fibcache-embedder"),
        "{}",
        help.stdout
    );

    let mistake = Spawn::new()
        .program(&bin)
        .args(["--cache", "nonesuch"])
        .run_to_exit();
    assert_eq!(mistake.code(), Some(2), "{mistake:?}");
    assert!(
        mistake.stderr.starts_with("fibcache-embedder: error: "),
        "{}",
        mistake.stderr
    );
}

#[test]
fn fibcache_itself_says_who_it_is_and_what_it_was_built_with() {
    let mut features = Vec::new();
    for (on, feature) in [
        (cfg!(feature = "memory"), "memory"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "dynamic"), "dynamic"),
    ] {
        if on {
            features.push(feature);
        }
    }
    let built = if features.is_empty() {
        "nop only".to_owned()
    } else {
        features.join(", ")
    };
    let version = Spawn::new().arg("--version").run_to_exit();
    assert_eq!(
        version.stdout.trim(),
        format!("fibcache {} ({built})", env!("CARGO_PKG_VERSION"))
    );
    let help = Spawn::new().arg("--help").run_to_exit();
    assert!(
        help.stdout.starts_with(env!("CARGO_PKG_DESCRIPTION")),
        "{}",
        help.stdout
    );
}

#[tokio::test]
async fn the_app_nests_in_axum_with_every_per_request_behaviour() {
    let server = Spawn::new()
        .program(examples::binary("embed_axum"))
        .env("FIB_PORT", "0")
        .start();

    let first = get(server.addr, "/api/fib/20").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body, r#"{"result":6765}"#);
    assert_eq!(first.header("x-cache"), Some("miss"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    let second = get(server.addr, "/api/fib/20").await;
    assert_eq!(json(&second)["result"], 6765);
    let cached = if cfg!(feature = "memory") {
        "hit"
    } else {
        "miss"
    };
    assert_eq!(second.header("x-cache"), Some(cached));

    let out_of_range = get(server.addr, "/api/fib/93").await;
    assert_eq!(out_of_range.status, 422);
    assert_eq!(
        json(&out_of_range)["error"],
        "n must be between 0 and 92",
        "{}",
        out_of_range.body
    );
    let not_a_number = get(server.addr, "/api/fib/ten").await;
    assert_eq!(not_a_number.status, 400);
    assert!(json(&not_a_number)["error"].is_string());
    let no_route = get(server.addr, "/api/nowhere").await;
    assert_eq!(no_route.status, 404);
    assert!(json(&no_route)["error"].is_string());

    // The app's own metrics and health answer under the prefix, and the host's routes are
    // still the host's.
    let health = get(server.addr, "/api/healthz").await;
    let backend = if cfg!(feature = "memory") {
        "memory"
    } else {
        "nop"
    };
    assert_eq!(json(&health)["backend"], backend);
    let metrics = get(server.addr, "/api/metrics").await;
    assert_eq!(
        support::metric_value(
            &metrics.body,
            r#"fibcache_requests_total{route="/fib",status="422"}"#
        ),
        Some(1.0),
        "{}",
        metrics.body
    );
    let host = get(server.addr, "/").await;
    assert_eq!(host.status, 200);
    assert!(host.body.contains("axum application"), "{}", host.body);
}
