//! The tests of `tests/wasm.rs` that need the `wasm` feature: guests built from `guests/`,
//! loaded into this process and into the real binary.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::load::ClientLoops;
use crate::support::{self, get, json, Spawn};
use fibcache_core::reload::ContentHash;
use fibcache_core::{Config, Origin, Registry};
use fibcache_wasm::{load_plugins, Limits};

/// The path of the component of the guest package `name` (`memory-hog` → `memory_hog.wasm`),
/// all guests built (once per test run, release, as a user builds them) on first use.
fn guest(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_guests);
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn build_guests() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    assert!(
        Path::new(&sysroot)
            .join("lib/rustlib/wasm32-wasip2")
            .is_dir(),
        "the guests need the wasm32-wasip2 target; install it with: rustup target add \
         wasm32-wasip2"
    );
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join("guests/Cargo.toml"))
        .output()
        .expect("run cargo build for the guests");
    assert!(
        out.status.success(),
        "building the guests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("guests/target/wasm32-wasip2/release")
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// A registry of this test binary's built-in backends plus the components `names`.
fn registry_with(names: &[&str]) -> Registry {
    let mut registry = Registry::new().unwrap();
    let paths: Vec<PathBuf> = names.iter().map(|n| guest(n)).collect();
    load_plugins(&paths, &mut registry, &Limits::default())
        .unwrap_or_else(|e| panic!("loading {names:?}: {e}"));
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn memcache_passes_the_conformance_suite_through_the_host() {
    let registry = registry_with(&["memcache"]);
    let backend = registry.get("memcache").unwrap();
    assert_eq!(
        backend.origin(),
        &Origin::Wasm {
            path: path_str(&guest("memcache"))
        }
    );
    let cache = registry
        .create("memcache", &Config::default())
        .await
        .unwrap();
    assert!(cache.expiry().is_some(), "memcache exports expiry");
    assert!(cache.claims().is_some(), "memcache exports claims");
    fibcache_core::testing::conformance(cache, "wasm:").await;
}

#[tokio::test]
async fn a_guest_without_the_optional_interfaces_offers_neither_capability() {
    let registry = registry_with(&["trapping"]);
    let cache = registry
        .create("trapping", &Config::default())
        .await
        .unwrap();
    assert!(cache.expiry().is_none());
    assert!(cache.claims().is_none());
    cache.set("k", "v", Duration::from_secs(5)).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn a_trap_is_an_error_and_the_next_call_runs_on_a_fresh_instance() {
    let registry = registry_with(&["trapping"]);
    let cache = registry
        .create("trapping", &Config::default())
        .await
        .unwrap();
    let err = cache.get("fib:13").await.unwrap_err();
    assert!(err.chain().contains("trapped"), "{}", err.chain());
    // The fresh instance starts empty and works.
    assert_eq!(cache.get("fib:10").await.unwrap(), None);
    cache
        .set("fib:10", "55", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cache.get("fib:10").await.unwrap().as_deref(), Some("55"));
}

#[tokio::test]
async fn an_oversized_value_is_refused_naming_its_length() {
    let registry = registry_with(&["oversized"]);
    let cache = registry
        .create("oversized", &Config::default())
        .await
        .unwrap();
    let err = cache.get("fib:10").await.unwrap_err();
    assert!(
        err.chain().contains("refused a value of 2097152 bytes"),
        "{}",
        err.chain()
    );
}

#[tokio::test]
async fn a_looping_call_is_interrupted_at_the_operation_timeout() {
    let registry = registry_with(&["looping"]);
    let config = Config::default().with_op_timeout(Duration::from_millis(100));
    let cache = registry.create("looping", &config).await.unwrap();
    let err = cache.get("fib:10").await.unwrap_err();
    assert!(err.is_unavailable(), "{}", err.chain());
    assert!(err.chain().contains("interrupted"), "{}", err.chain());
    // The instance is re-created: `set` does not loop, and answers.
    cache
        .set("fib:10", "55", Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_memory_hog_traps_at_the_cap_and_is_recreated() {
    let mut registry = Registry::new().unwrap();
    let limits = Limits::default().with_max_memory(8 << 20);
    load_plugins(&[guest("memory-hog")], &mut registry, &limits).unwrap();
    let cache = registry
        .create("memory-hog", &Config::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let err = cache.get("fib:10").await.unwrap_err();
        assert!(err.chain().contains("trapped"), "{}", err.chain());
    }
    cache
        .set("fib:10", "55", Duration::from_secs(5))
        .await
        .unwrap();
}

// Through the real binary.

#[test]
fn list_backends_shows_the_component_as_origin() {
    let path = path_str(&guest("memcache"));
    let exit = Spawn::new()
        .args(["--plugin", &path, "--list-backends"])
        .run_to_exit();
    assert_eq!(exit.code(), Some(0), "{}", exit.stderr);
    let line = exit
        .stdout
        .lines()
        .find(|line| line.starts_with("memcache "))
        .unwrap_or_else(|| panic!("no memcache line in:\n{}", exit.stdout));
    assert!(line.contains(&format!("wasm:{path}")), "{line}");
}

#[tokio::test]
async fn the_binary_serves_hits_from_memcache_alone_and_as_a_tier() {
    let path = path_str(&guest("memcache"));
    // Alone, and as the near tier of two, so that its hits are counted as its own.
    for spec in ["memcache", "memcache+memory"] {
        let server = Spawn::new()
            .args(["--plugin", &path, "--cache", spec])
            .start();
        let health = json(&get(server.addr, "/healthz").await);
        assert_eq!(health["backend"], spec);
        let first = get(server.addr, "/fib/30").await;
        assert_eq!(first.status, 200);
        assert_eq!(json(&first)["result"], 832040);
        assert_eq!(first.header("x-cache"), Some("miss"));
        for _ in 0..5 {
            let again = get(server.addr, "/fib/30").await;
            assert_eq!(json(&again)["result"], 832040);
            assert_eq!(again.header("x-cache"), Some("hit"), "{spec}");
        }
        let hits = r#"fibcache_cache_hits_total{tier="memcache"}"#;
        assert_eq!(server.metric(hits).await, 5.0);
        assert_eq!(server.metric("fibcache_cache_errors_total").await, 0.0);
    }
}

#[tokio::test]
async fn the_environment_selects_a_component_backend() {
    let path = path_str(&guest("memcache"));
    let server = Spawn::new()
        .env("FIB_CACHE_PLUGIN", &path)
        .env("FIB_CACHE", "memcache")
        .env("FIB_WASM_MAX_MEMORY", "16MiB")
        .start();
    assert_eq!(
        json(&get(server.addr, "/healthz").await)["backend"],
        "memcache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_guest_costs_its_request_the_timeout_and_livez_answers_meanwhile() {
    let path = path_str(&guest("looping"));
    // A long limit, so that the window in which the guest spins is wide.
    let server = Spawn::new()
        .args([
            "--plugin",
            &path,
            "--cache",
            "looping",
            "--cache-timeout",
            "3s",
        ])
        .start();
    let addr = server.addr;
    let fib = tokio::spawn(async move { get(addr, "/fib/25").await });
    // The guest is spinning once the call is queued; /livez and the metrics answer meanwhile.
    let livez = get(addr, "/livez").await;
    assert_eq!(livez.status, 200);
    assert!(
        !fib.is_finished(),
        "the looping call ended before /livez answered"
    );
    let fib = fib.await.unwrap();
    assert_eq!(fib.status, 200);
    assert_eq!(json(&fib)["result"], 75025);
    assert_eq!(fib.header("x-cache"), Some("miss"));
    assert!(server.metric("fibcache_cache_errors_total").await >= 1.0);
}

#[tokio::test]
async fn a_memory_hog_is_a_counted_miss_and_the_server_keeps_answering() {
    let path = path_str(&guest("memory-hog"));
    let server = Spawn::new()
        .args(["--plugin", &path, "--cache", "memory-hog"])
        .args(["--wasm-max-memory", "8MiB"])
        .start();
    for n in [20, 21, 22] {
        let resp = get(server.addr, &format!("/fib/{n}")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-cache"), Some("miss"));
    }
    // Each get traps at the cap; each set after it works on the fresh instance.
    assert_eq!(server.metric("fibcache_cache_errors_total").await, 3.0);
}

#[tokio::test]
async fn a_trapping_guest_is_a_counted_miss_and_the_next_call_works() {
    let path = path_str(&guest("trapping"));
    let server = Spawn::new()
        .args(["--plugin", &path, "--cache", "trapping"])
        .start();
    let resp = get(server.addr, "/fib/13").await;
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 233);
    // Its get and its set both trapped.
    assert_eq!(server.metric("fibcache_cache_errors_total").await, 2.0);
    assert_eq!(
        get(server.addr, "/fib/10").await.header("x-cache"),
        Some("miss")
    );
    assert_eq!(
        get(server.addr, "/fib/10").await.header("x-cache"),
        Some("hit")
    );
    assert_eq!(server.metric("fibcache_cache_errors_total").await, 2.0);
}

#[tokio::test]
async fn an_oversized_value_is_a_counted_miss() {
    let path = path_str(&guest("oversized"));
    let server = Spawn::new()
        .args(["--plugin", &path, "--cache", "oversized"])
        .start();
    let resp = get(server.addr, "/fib/10").await;
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 55);
    assert_eq!(resp.header("x-cache"), Some("miss"));
    assert_eq!(server.metric("fibcache_cache_errors_total").await, 1.0);
}

/// Runs the binary with `args` and returns its one line of error output, after checking the
/// exit status 2.
fn startup_error(args: &[&str]) -> String {
    let exit = Spawn::new().args(args.iter().copied()).run_to_exit();
    assert_eq!(exit.code(), Some(2), "{args:?}: {}", exit.stderr);
    let lines: Vec<&str> = exit.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{}", exit.stderr);
    lines[0].to_owned()
}

#[test]
fn a_guest_of_another_major_version_is_refused_naming_both_versions() {
    let path = path_str(&guest("other-version"));
    let line = startup_error(&["--plugin", &path, "--list-backends"]);
    assert!(line.contains(&path), "{line}");
    assert!(line.contains("fibcache:cache@1.0.0"), "{line}");
    assert!(line.contains("fibcache:cache@0.1.0"), "{line}");
}

#[test]
fn bad_components_are_refused_at_start_up_with_one_line() {
    let dir = std::env::temp_dir().join(format!("fibcache-wasm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"this is not WebAssembly").unwrap();
    let module = dir.join("module.wasm");
    // The smallest core module: a module, not a component.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let truncated = dir.join("truncated.wasm");
    let whole = std::fs::read(guest("memcache")).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let memcache = path_str(&guest("memcache"));
    let twin = dir.join("twin.wasm");
    std::fs::copy(&memcache, &twin).unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![path_str(&garbage)],
            "not a valid WebAssembly component",
        ),
        (vec![path_str(&module)], "not a valid WebAssembly component"),
        (
            vec![path_str(&truncated)],
            "not a valid WebAssembly component",
        ),
        (vec![path_str(&dir.join("absent.wasm"))], "cannot read it"),
        (
            vec![path_str(&guest("other-world"))],
            "not a fibcache cache component",
        ),
        (vec![path_str(&guest("no-backends"))], "names no backend"),
        (vec![memcache.clone(), path_str(&twin)], "memcache"),
    ];
    for (plugins, expected) in cases {
        let mut args = Vec::new();
        for plugin in &plugins {
            args.extend(["--plugin", plugin.as_str()]);
        }
        args.push("--list-backends");
        let line = startup_error(&args);
        assert!(line.contains(expected), "{plugins:?}: {line}");
        assert!(line.contains(plugins.last().unwrap()), "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_guest_that_traps_when_opened_is_refused_at_start_up() {
    let path = path_str(&guest("open-trap"));
    let line = startup_error(&["--plugin", &path, "--cache", "open-trap"]);
    assert!(line.contains("open-trap"), "{line}");
    assert!(line.contains("trapped"), "{line}");
}

#[test]
fn wasm_max_memory_must_be_a_size() {
    let exit = Spawn::new()
        .args(["--wasm-max-memory", "lots", "--list-backends"])
        .run_to_exit();
    assert_eq!(exit.code(), Some(2), "{}", exit.stderr);
    assert!(exit.stderr.contains("64MiB"), "{}", exit.stderr);
}

#[tokio::test]
async fn each_cache_of_a_component_is_an_instance_of_its_own() {
    {
        let registry = registry_with(&["memcache"]);
        let a = registry
            .create("memcache", &Config::default())
            .await
            .unwrap();
        let b = registry
            .create("memcache", &Config::default())
            .await
            .unwrap();
        a.set("k", "1", Duration::from_secs(5)).await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some("1"));
        assert_eq!(b.get("k").await.unwrap(), None);
    }
}

// Reloading (SIGHUP).

/// A copy of the guest `name` in a directory of this test's own, to change at will.
fn scratch_copy(name: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fibcache-wasm-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::copy(guest(name), &path).unwrap();
    path
}

/// Appends a custom section (id 0) to a component: the same guest, a different file.
fn append_custom_section(path: &Path, payload: &str) {
    let name = b"fibcache-test";
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "one-byte LEB128 sizes only");
    let mut section = vec![0u8, size as u8, name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(&section);
    std::fs::write(path, bytes).unwrap();
}

/// A registry with the component at `path` loaded, and the `Plugins` that reloads it.
fn load_one(path: &Path) -> (Registry, fibcache_wasm::Plugins) {
    let mut registry = Registry::new().unwrap();
    let plugins = load_plugins(&[path.to_owned()], &mut registry, &Limits::default()).unwrap();
    (registry, plugins)
}

fn outcomes(reloads: &[fibcache_wasm::Reload]) -> Vec<&'static str> {
    reloads.iter().map(|r| r.outcome.label()).collect()
}

#[tokio::test]
async fn a_reload_swaps_a_changed_component_and_keeps_the_old_one_on_failure() {
    let path = scratch_copy("memcache", "reload");
    let (registry, mut plugins) = load_one(&path);
    let cache = registry
        .create("memcache", &Config::default())
        .await
        .unwrap();
    cache.set("k", "1", Duration::from_secs(60)).await.unwrap();

    assert_eq!(outcomes(&plugins.reload()), ["unchanged"]);
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("1"));

    append_custom_section(&path, "v2");
    assert_eq!(outcomes(&plugins.reload()), ["reloaded"]);
    // The next call runs on a fresh instance of the new version: its store starts empty.
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.set("k", "2", Duration::from_secs(60)).await.unwrap();

    std::fs::write(&path, b"not a component").unwrap();
    let reloads = plugins.reload();
    assert_eq!(outcomes(&reloads), ["failed"]);
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("2"));

    // A valid component serving other backends cannot replace this one.
    std::fs::copy(guest("trapping"), &path).unwrap();
    let reloads = plugins.reload();
    match &reloads[0].outcome {
        fibcache_wasm::ReloadOutcome::Failed(reason) => {
            assert!(reason.contains("instead of memcache"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("2"));

    // A version that lists the same backend but refuses to open it is never swapped in.
    std::fs::copy(guest("refusing"), &path).unwrap();
    let reloads = plugins.reload();
    match &reloads[0].outcome {
        fibcache_wasm::ReloadOutcome::Failed(reason) => assert!(
            reason.contains("does not open the backend memcache")
                && reason.contains("this version refuses to open"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("2"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn loaded_files_carry_the_sha256_of_the_version_serving() {
    let path = scratch_copy("memcache", "hash");
    let (_registry, mut plugins) = load_one(&path);
    let sha256 = |path: &Path| ContentHash::of(&std::fs::read(path).unwrap()).to_string();
    let first = sha256(&path);
    let loaded = plugins.loaded();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].path(), path);
    assert_eq!(loaded[0].kind(), "wasm");
    assert_eq!(loaded[0].hash().to_string(), first);

    append_custom_section(&path, "v2");
    assert_eq!(outcomes(&plugins.reload()), ["reloaded"]);
    let second = sha256(&path);
    assert_ne!(first, second);
    assert_eq!(plugins.loaded()[0].hash().to_string(), second);

    // A refused version leaves the serving one's hash.
    std::fs::write(&path, b"broken").unwrap();
    assert_eq!(outcomes(&plugins.reload()), ["failed"]);
    assert_eq!(plugins.loaded()[0].hash().to_string(), second);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_versions_under_load_with_no_failed_request() {
    let path = scratch_copy("memcache", "sighup");
    let original = std::fs::read(&path).unwrap();
    let server = Spawn::new()
        .args(["--plugin", &path_str(&path), "--cache", "memcache"])
        .start();
    let addr = server.addr;
    let load = ClientLoops::start(addr, 4, |n| format!("/fib/{}", 20 + n % 5));
    let reloaded = r#"fibcache_plugin_reloads_total{outcome="reloaded"}"#;
    for round in 1..=10 {
        let mut bytes = original.clone();
        std::fs::write(&path, &bytes).unwrap();
        if round % 2 == 1 {
            bytes.clear();
            append_custom_section(&path, &format!("v{round}"));
        }
        server.signal("HUP");
        support::eventually_async("a reload counted", Duration::from_secs(30), || async {
            (server.metric(reloaded).await >= f64::from(round)).then_some(())
        })
        .await;
    }
    // An unchanged file is a no-op; a broken one leaves the old version serving.
    server.signal("HUP");
    let unchanged = r#"fibcache_plugin_reloads_total{outcome="unchanged"}"#;
    support::eventually_async("an unchanged reload", Duration::from_secs(30), || async {
        (server.metric(unchanged).await >= 1.0).then_some(())
    })
    .await;
    std::fs::write(&path, b"broken").unwrap();
    server.signal("HUP");
    let failed = r#"fibcache_plugin_reloads_total{outcome="failed"}"#;
    support::eventually_async("a failed reload", Duration::from_secs(30), || async {
        (server.metric(failed).await >= 1.0).then_some(())
    })
    .await;
    let total = load.stop().await;
    assert_eq!(total.1, 0, "failed requests during reloads");
    assert!(total.0 > 0);
    assert_eq!(server.metric(reloaded).await, 10.0);
    // Round 10 put the original back; the broken file after it changed nothing.
    let info = format!(
        r#"fibcache_plugin_info{{kind="wasm",path="{}",sha256="{}"}}"#,
        path.display(),
        ContentHash::of(&original)
    );
    assert_eq!(server.metric(&info).await, 1.0);
    let resp = get(addr, "/fib/21").await;
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 10946);
    support::eventually(
        "the failed reload's log line",
        Duration::from_secs(10),
        || server.log().contains("plugin not reloaded").then_some(()),
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
