//! Plugins (feature `dynamic`): the example plugins and the bad-input fixtures are built by
//! this test run, then loaded into the real `fibcache` binary and into this process.
//!
//! Run with `cargo test --features dynamic,redis --test plugin` (without `redis`, the
//! `rediscache` tests are left out, because that plugin needs the Redis client). The
//! `memcache` plugin is the `memory` backend, so the test needs that feature too (it is on by
//! default).
#![cfg(all(feature = "dynamic", feature = "memory"))]

mod support;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use fibcache_core::plugin::{load_plugins, LoadErrorKind, MAX_RELOADS};
use fibcache_core::reload::{ContentHash, Reload, ReloadOutcome};
use fibcache_core::{Config, ErrorKind, Origin, Registry};
use support::load::ClientLoops;
use support::{get, json, Spawn};

/// Every plugin example this build can make.
const EXAMPLES: &[&str] = &[
    "memcache_plugin",
    #[cfg(feature = "redis")]
    "rediscache_plugin",
    "fixture_abi_v1",
    "fixture_old_core",
    "fixture_panic_abort",
    "fixture_panicking_plugin",
    "fixture_failing_factory",
    "fixture_duplicate_name",
    "fixture_blocking_plugin",
    "fixture_huge_value",
    "fixture_malformed_table",
];

/// The path of the shared library of the example `name`, built (once per test run, with this
/// test's features and profile, into the same target directory) on first use.
fn plugin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_examples);
    let file = format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = dir.join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn build_examples() -> PathBuf {
    support::examples::build(EXAMPLES, &[])
}

/// A registry of this test binary's built-in backends plus the libraries `names`.
fn registry_with(names: &[&str]) -> Registry {
    capture_plugin_logs();
    let mut registry = Registry::new().unwrap();
    let paths: Vec<PathBuf> = names.iter().map(|n| plugin(n)).collect();
    load_plugins(&paths, &mut registry).unwrap_or_else(|e| panic!("loading {names:?}: {e}"));
    registry
}

/// A `Config` that fails fast enough for tests (the conformance suite runs real time).
fn config() -> Config {
    Config::default().with_op_timeout(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------------
// In process: `load_plugins` and the `Cache` wrapper.

#[tokio::test]
async fn memcache_passes_the_cache_conformance_suite() {
    let registry = registry_with(&["memcache_plugin"]);
    let cache = registry.create("memcache", &config()).await.unwrap();
    // The `memory` backend offers no capability, and so neither does its plugin.
    assert!(cache.expiry().is_none() && cache.claims().is_none());
    support::conformance::run(cache, "conformance:memcache:").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediscache_passes_the_cache_conformance_suite_capabilities_included() {
    let redis = support::redis_server::RedisServer::start();
    let registry = registry_with(&["rediscache_plugin"]);
    let config = config().with_var("REDIS_URL", redis.url());
    let cache = registry.create("rediscache", &config).await.unwrap();
    // As the built-in `redis` offers them: the suite then checks them through the plugin.
    assert!(cache.expiry().is_some(), "Expiry crosses the boundary");
    assert!(cache.claims().is_some(), "Claims cross the boundary");
    support::conformance::run(cache, "conformance:rediscache:").await;
}

#[tokio::test]
async fn a_blocking_plugin_returns_the_call_at_once_and_keeps_the_thread_free() {
    let registry = registry_with(&["fixture_blocking_plugin"]);
    let cache = registry.create("sleepy", &config()).await.unwrap();
    // Inline polling would run the backend's `get`, and its 10 s sleep, right here: the first
    // poll would end with the answer. It ends at once, pending, as the plugin runs the
    // operation on its own runtime.
    let mut get = cache.get("fib:20");
    let first = futures_poll_once(&mut get).await;
    assert!(first.is_none(), "the first poll answered: {first:?}");
    // A second call is not held up by the first either.
    let mut again = cache.get("fib:21");
    assert!(futures_poll_once(&mut again).await.is_none());
    // The thread is free: this single-threaded runtime still runs other tasks.
    assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
}

/// Polls `fut` once; `Some` with its output if that finished it.
async fn futures_poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_value_longer_than_the_bound_is_a_backend_error_and_is_never_copied() {
    let registry = registry_with(&["fixture_huge_value"]);
    let bounded = config().with_max_value_len(NonZeroUsize::new(19).unwrap());
    let cache = registry.create("huge", &bounded).await.unwrap();
    let err = cache.get("fib:20").await.unwrap_err();
    // A failure of the backend (not "unavailable": nothing is skipped), with the reason.
    assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
    assert_eq!(err.backend_name(), "huge");
    let why = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        why.as_deref(),
        Some("the plugin answered a value of 8388608 bytes, longer than the 19 this cache accepts")
    );
    // Within the bound, the value is the caller's.
    let roomy = config().with_max_value_len(NonZeroUsize::new(8 << 20).unwrap());
    let cache = registry.create("huge", &roomy).await.unwrap();
    let value = cache.get("fib:20").await.unwrap().unwrap();
    assert_eq!(value.len(), 8 << 20);
    // The default bound of `Config` (1 MiB) refuses it.
    let err = registry
        .create("huge", &config())
        .await
        .unwrap()
        .get("fib:20")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
}

#[tokio::test]
async fn plugin_backends_join_the_registry_marked_with_their_library() {
    let registry = registry_with(&["memcache_plugin", "fixture_panicking_plugin"]);
    let memcache = registry.get("memcache").unwrap();
    assert_eq!(
        memcache.origin(),
        &Origin::Plugin {
            path: plugin("memcache_plugin").display().to_string()
        }
    );
    assert_eq!(
        memcache.summary(),
        "in-memory LRU with a TTL per entry, loaded from a plugin"
    );
    assert!(registry.contains("panicky"));
    // The built-in ones are still there, and the plugins' own copies of them (the `nop` that
    // every plugin links) were not exported again.
    assert!(matches!(
        registry.get("nop").unwrap().origin(),
        Origin::Static { .. }
    ));
    let from_plugins: Vec<&str> = registry
        .iter()
        .filter(|b| matches!(b.origin(), Origin::Plugin { .. }))
        .map(|b| b.name())
        .collect();
    assert_eq!(from_plugins, ["memcache", "panicky"]);
}

#[tokio::test]
async fn a_panic_in_get_is_a_backend_error_and_the_instance_keeps_working() {
    let registry = registry_with(&["fixture_panicking_plugin"]);
    let cache = registry.create("panicky", &config()).await.unwrap();
    for _ in 0..3 {
        let err = cache.get("fib:20").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
        assert_eq!(err.backend_name(), "panicky");
        let text = std::error::Error::source(&err).unwrap().to_string();
        assert!(text.contains("panicked"), "{text}");
        assert!(text.contains("get(fib:20) always panics"), "{text}");
        // Where it panicked, as the plugin's panic hook saw it.
        assert!(
            text.contains("(at examples/fixture_panicking_plugin.rs:"),
            "{text}"
        );
        // The same instance still answers what does not panic.
        cache
            .set("fib:20", "6765", Duration::from_secs(5))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_failing_factory_is_a_config_error_carrying_the_plugins_message() {
    let registry = registry_with(&["fixture_failing_factory"]);
    let err = registry.create("failing", &config()).await.err().unwrap();
    let err = err.cause().expect("the factory failed");
    assert!(err.is_config(), "expected a config error, got {err:?}");
    assert_eq!(err.backend_name(), "failing");
    assert_eq!(
        err.message(),
        Some("FAILING_FIXTURE_SETTING is not set; this fixture never starts")
    );
}

#[tokio::test]
async fn plugin_log_events_reach_the_host_subscriber() {
    let registry = registry_with(&["memcache_plugin"]);
    // A capacity no other test asks for, so that the event found is this test's own.
    let capacity = NonZeroUsize::new(31_337).unwrap();
    registry
        .create("memcache", &config().with_capacity(capacity))
        .await
        .unwrap();
    let path = plugin("memcache_plugin").display().to_string();
    let events = captured();
    let created = events
        .iter()
        .find(|e| e.contains("memcache created") && e.contains(&format!("capacity={capacity}")))
        .unwrap_or_else(|| panic!("no `memcache created` event for {capacity} in {events:#?}"));
    assert!(created.starts_with("INFO fibcache::plugin:"), "{created}");
    assert!(created.contains(&format!("plugin={path}")), "{created}");
    assert!(
        created.contains("plugin_target=memcache_plugin"),
        "{created}"
    );
}

#[test]
fn loading_a_library_twice_is_refused_as_a_name_clash() {
    let mut registry = registry_with(&["memcache_plugin"]);
    let path = plugin("memcache_plugin");
    let err = load_plugins(std::slice::from_ref(&path), &mut registry).unwrap_err();
    assert_eq!(err.kind(), LoadErrorKind::NameTaken, "{err:?}");
    let shown = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `{shown}` registers backend `memcache`, which is already taken by \
             plugin:{shown}; rename the plugin's backend or drop one of the two"
        )
    );
}

#[test]
fn bad_libraries_are_refused_in_process_with_the_reason() {
    for case in bad_inputs() {
        let mut registry = Registry::new().unwrap();
        let before = registry.names().len();
        let err = load_plugins(std::slice::from_ref(&case.path), &mut registry).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&case.expect),
            "{}: {text:?} should contain {:?}",
            case.what,
            case.expect
        );
        assert!(
            text.contains(&case.path.display().to_string()),
            "{}: {text:?} names the path",
            case.what
        );
        assert!(!text.contains('\n'), "{}: one line: {text:?}", case.what);
        assert_eq!(
            registry.names().len(),
            before,
            "{}: nothing added",
            case.what
        );
    }
}

#[test]
fn a_plugin_of_abi_1_is_refused_naming_both_sides_versions() {
    let path = plugin("fixture_abi_v1");
    let err = load_plugins(&[path], &mut Registry::new().unwrap()).unwrap_err();
    assert_eq!(err.kind(), LoadErrorKind::Incompatible, "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("built for plugin ABI 1 (fibcache-core 0.1.0)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "speaks ABI 2 (fibcache-core {})",
            fibcache_core::VERSION
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_plugin_of_this_abi_built_against_another_core_loads_and_logs_its_core() {
    let registry = registry_with(&["fixture_old_core"]);
    let cache = registry.create("oldcore", &config()).await.unwrap();
    assert_eq!(cache.get("fib:1").await.unwrap(), None);

    let lib = plugin("fixture_old_core");
    let server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .env("FIB_CACHE", "oldcore")
        .start();
    let resp = get(server.addr, "/fib/20").await;
    assert_eq!(json(&resp)["result"], 6765);
    let loaded = support::eventually("the plugin's load line", Duration::from_secs(10), || {
        server
            .log()
            .lines()
            .find(|l| l.contains("plugin loaded") && l.contains("oldcore"))
            .map(str::to_owned)
    });
    assert!(loaded.contains("core=0.1.0"), "{loaded}");
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused() {
    let path = plugin("fixture_panic_abort");
    let err = load_plugins(&[path], &mut Registry::new().unwrap()).unwrap_err();
    assert_eq!(err.kind(), LoadErrorKind::PanicAbort, "{err:?}");
}

/// One library that must be refused, and a piece of the message that says why.
struct BadInput {
    what: &'static str,
    path: PathBuf,
    expect: String,
}

fn bad_inputs() -> Vec<BadInput> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let text_file = tmp.join("not-a-library.so");
    std::fs::write(&text_file, "this is text, not a shared library\n").unwrap();
    let mut cases = vec![
        BadInput {
            what: "missing file",
            path: tmp.join("no-such-plugin.so"),
            expect: "does not exist".to_owned(),
        },
        BadInput {
            what: "text file",
            path: text_file,
            expect: "is not a loadable shared library".to_owned(),
        },
        BadInput {
            what: "ABI 1",
            path: plugin("fixture_abi_v1"),
            expect: format!(
                "was built for plugin ABI 1 (fibcache-core 0.1.0) but this fibcache speaks ABI 2 \
                 (fibcache-core {})",
                fibcache_core::VERSION
            ),
        },
        BadInput {
            what: "2^60 backends",
            path: plugin("fixture_malformed_table"),
            expect: format!(
                "is malformed: it exports 1152921504606846976 backends, more than the {} a \
                 plugin may",
                fibcache_core::plugin::MAX_BACKENDS
            ),
        },
        BadInput {
            what: "panic=abort",
            path: plugin("fixture_panic_abort"),
            expect: "was built with panic=abort".to_owned(),
        },
    ];
    if let Some(libc) = system_libc() {
        cases.push(BadInput {
            what: "system libc",
            path: libc,
            expect: "is a shared library but not a fibcache plugin".to_owned(),
        });
    }
    cases
}

/// The C library of this system, a shared library that is certainly not a fibcache plugin.
fn system_libc() -> Option<PathBuf> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let found = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib/aarch64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    Some(found.expect("no libc.so.6 found in the usual places on this Linux system"))
}

// ---------------------------------------------------------------------------------------------
// Reloading (in process here, SIGHUP below).

/// A copy of the plugin `name` in a directory of this test's own, to change at will.
fn scratch_copy(name: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fibcache-native-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(plugin(name).file_name().unwrap());
    std::fs::copy(plugin(name), &path).unwrap();
    path
}

/// Appends `tail` to a library, writing into the file in place (what `cp` does, and what would
/// crash a server running a library mapped from the file itself): the loader ignores bytes
/// past the last section, so it is the same plugin in a file with other content.
fn append(path: &Path, tail: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(tail.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Replaces the file at `path` with one holding `bytes`, by renaming a new file over it.
fn replace(path: &Path, bytes: &[u8]) {
    let new = path.with_extension("new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, path).unwrap();
}

fn sha256(path: &Path) -> String {
    ContentHash::of(&std::fs::read(path).unwrap()).to_string()
}

fn outcomes(reloads: &[Reload]) -> Vec<&'static str> {
    reloads.iter().map(|r| r.outcome.label()).collect()
}

fn failure(reloads: &[Reload]) -> String {
    match &reloads[0].outcome {
        ReloadOutcome::Failed(reason) => reason.clone(),
        other => panic!("expected a failed reload, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_reload_swaps_a_changed_library_and_keeps_the_old_one_on_failure() {
    capture_plugin_logs();
    let path = scratch_copy("memcache_plugin", "reload");
    let original = std::fs::read(&path).unwrap();
    let mut registry = Registry::new().unwrap();
    let mut plugins = load_plugins(std::slice::from_ref(&path), &mut registry).unwrap();
    let loaded = plugins.loaded();
    assert_eq!(
        (loaded[0].path(), loaded[0].kind()),
        (path.as_path(), "native")
    );
    assert_eq!(loaded[0].hash().to_string(), sha256(&path));
    let cache = registry.create("memcache", &config()).await.unwrap();
    cache.set("k", "1", Duration::from_secs(60)).await.unwrap();

    assert_eq!(outcomes(&plugins.reload().await), ["unchanged"]);
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("1"));

    append(&path, "v2");
    assert_eq!(outcomes(&plugins.reload().await), ["reloaded"]);
    assert_eq!(plugins.loaded()[0].hash().to_string(), sha256(&path));
    // The next call runs on a fresh instance of the new version: its store starts empty.
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.set("k", "2", Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("2"));

    // Back to the first content: the mapping made at start-up serves again.
    replace(&path, &original);
    assert_eq!(outcomes(&plugins.reload().await), ["reloaded"]);
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.set("k", "3", Duration::from_secs(60)).await.unwrap();

    replace(&path, b"not a library");
    let reason = failure(&plugins.reload().await);
    assert!(reason.contains("not a loadable shared library"), "{reason}");
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("3"));
    // The same broken content is not loaded again.
    let reason = failure(&plugins.reload().await);
    assert!(reason.starts_with("unchanged since it failed"), "{reason}");

    // A plugin exporting other backends cannot replace this one.
    replace(
        &path,
        &std::fs::read(plugin("fixture_failing_factory")).unwrap(),
    );
    let reason = failure(&plugins.reload().await);
    assert!(
        reason.contains("exports failing instead of memcache"),
        "{reason}"
    );
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("3"));
    assert_eq!(plugins.loaded()[0].hash().to_string(), sha256_of(&original));

    // Each new content maps one more copy for good: the bound refuses the one past it. Two
    // copies were given to the loader above (the broken file and the other plugin).
    let mut reloaded = 0;
    for round in 0.. {
        let mut bytes = original.clone();
        bytes.extend_from_slice(format!("round {round}").as_bytes());
        replace(&path, &bytes);
        let reloads = plugins.reload().await;
        if outcomes(&reloads) == ["reloaded"] {
            reloaded += 1;
            continue;
        }
        let reason = failure(&reloads);
        assert!(reason.contains("the most for a native plugin"), "{reason}");
        break;
    }
    assert_eq!(reloaded, MAX_RELOADS - 3);
    // Known contents still swap back at no cost.
    replace(&path, &original);
    assert_eq!(outcomes(&plugins.reload().await), ["reloaded"]);
    assert_eq!(cache.get("k").await.unwrap(), None);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

fn sha256_of(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_string()
}

/// SIGHUP under load: 10 swaps between two contents of the memcache plugin while four
/// clients keep asking; no request fails, and `fibcache_plugin_info` names the version
/// serving.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_a_native_plugin_under_load_with_no_failed_request() {
    let path = scratch_copy("memcache_plugin", "sighup");
    let original = std::fs::read(&path).unwrap();
    let shown = path.display().to_string();
    let server = Spawn::new()
        .args(["--plugin", &shown, "--cache", "memcache"])
        .start();
    let info = |content: &[u8]| {
        format!(
            r#"fibcache_plugin_info{{kind="native",path="{shown}",sha256="{}"}}"#,
            sha256_of(content)
        )
    };
    assert_eq!(server.metric(&info(&original)).await, 1.0);
    let addr = server.addr;
    let load = ClientLoops::start(addr, 4, |n| format!("/fib/{}", 20 + n % 5));
    let reloaded = r#"fibcache_plugin_reloads_total{outcome="reloaded"}"#;
    let mut changed = original.clone();
    changed.extend_from_slice(b"v2");
    for round in 1..=10 {
        let content = if round % 2 == 1 { &changed } else { &original };
        std::fs::write(&path, content).unwrap();
        server.signal("HUP");
        support::eventually_async("a reload counted", Duration::from_secs(30), || async {
            (server.metric(reloaded).await >= f64::from(round)).then_some(())
        })
        .await;
    }
    let total = load.stop().await;
    assert_eq!(total.1, 0, "failed requests during reloads");
    assert!(total.0 > 0);
    assert_eq!(server.metric(reloaded).await, 10.0);
    // The original serves again: its series is back, the other version's is gone.
    let metrics = get(addr, "/metrics").await.body;
    assert!(
        metrics.contains(&format!("{} 1", info(&original))),
        "{metrics}"
    );
    assert!(!metrics.contains(&sha256_of(&changed)), "{metrics}");
    let resp = get(addr, "/fib/21").await;
    assert_eq!(json(&resp)["result"], 10946);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The real binary.

#[tokio::test]
async fn memcache_plugin_serves_miss_then_hit() {
    let lib = plugin("memcache_plugin");
    let server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .env("FIB_CACHE", "memcache")
        .start();
    let health = get(server.addr, "/healthz").await;
    assert_eq!(json(&health)["backend"], "memcache");
    miss_then_hit(&server).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn rediscache_plugin_serves_miss_then_hit_from_a_real_redis() {
    let redis = support::redis_server::RedisServer::start();
    let lib = plugin("rediscache_plugin");
    let server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .env("FIB_CACHE", "rediscache")
        .env("REDIS_URL", redis.url())
        .start();
    miss_then_hit(&server).await;
    // The value is in Redis, under the server's key.
    assert_eq!(redis.command(&["GET", "fib:20"]), "6765");
}

/// `GET /fib/20` twice: computed, then answered from the cache.
async fn miss_then_hit(server: &support::Server) {
    let first = get(server.addr, "/fib/20").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(json(&first)["result"], 6765);
    assert_eq!(first.header("x-cache"), Some("miss"));
    let second = get(server.addr, "/fib/20").await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(json(&second)["result"], 6765);
    assert_eq!(
        second.header("x-cache"),
        Some("hit"),
        "log:\n{}",
        server.log()
    );
}

#[test]
fn list_backends_shows_plugin_backends_with_their_origin() {
    let lib = plugin("memcache_plugin");
    let exit = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let line = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("memcache "))
        .unwrap_or_else(|| panic!("no memcache line in:\n{}", exit.stdout));
    assert!(
        line.contains(&format!("plugin:{}", lib.display())),
        "{line}"
    );
    assert!(line.contains("loaded from a plugin"), "{line}");
    assert!(
        exit.stdout.lines().any(|l| l.starts_with("nop ")),
        "{}",
        exit.stdout
    );
}

#[test]
fn fib_cache_plugin_takes_a_colon_separated_list() {
    let (memcache, panicky) = (
        plugin("memcache_plugin"),
        plugin("fixture_panicking_plugin"),
    );
    let exit = Spawn::new()
        .env(
            "FIB_CACHE_PLUGIN",
            format!("{}:{}", memcache.display(), panicky.display()),
        )
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    for (name, lib) in [("memcache", &memcache), ("panicky", &panicky)] {
        let line = exit
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", exit.stdout));
        assert!(
            line.contains(&format!("plugin:{}", lib.display())),
            "{line}"
        );
    }
}

#[test]
fn bad_plugins_stop_start_up_with_one_line_and_status_2() {
    let mut cases: Vec<(BadInput, Option<&str>)> =
        bad_inputs().into_iter().map(|c| (c, None)).collect();
    cases.push((
        BadInput {
            what: "factory fails",
            path: plugin("fixture_failing_factory"),
            expect: "backend `failing` is misconfigured: FAILING_FIXTURE_SETTING is not set"
                .to_owned(),
        },
        Some("failing"),
    ));
    cases.push((
        BadInput {
            what: "name taken",
            path: plugin("fixture_duplicate_name"),
            expect: "registers backend `memory`, which is already taken by \
                     static:fibcache-backends"
                .to_owned(),
        },
        None,
    ));
    for (case, backend) in cases {
        let mut spawn = Spawn::new()
            .arg("--plugin")
            .arg(case.path.display().to_string());
        if let Some(name) = backend {
            spawn = spawn.env("FIB_CACHE", name);
        }
        let exit = spawn.run_to_exit();
        assert_eq!(exit.code(), Some(2), "{}: {exit:?}", case.what);
        let errors: Vec<&str> = exit
            .stderr
            .lines()
            .filter(|l| l.contains("error"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: one error line in {:?}",
            case.what,
            exit.stderr
        );
        assert!(
            errors[0].starts_with("fibcache: error: ") && errors[0].contains(&case.expect),
            "{}: {:?} should contain {:?}",
            case.what,
            errors[0],
            case.expect
        );
    }
}

#[tokio::test]
async fn a_panicking_plugin_still_gets_correct_answers_and_the_server_keeps_running() {
    let lib = plugin("fixture_panicking_plugin");
    let server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .env("FIB_CACHE", "panicky")
        .start();
    for _ in 0..3 {
        let resp = get(server.addr, "/fib/20").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(json(&resp)["result"], 6765);
        assert_eq!(resp.header("x-cache"), Some("miss"));
    }
    let health = get(server.addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert!(server.metric("fibcache_cache_errors_total").await >= 3.0);
    // The panic reached the server's log through the plugin's log forwarding.
    support::eventually("the panic in the log", Duration::from_secs(10), || {
        server
            .log()
            .contains("get(fib:20) always panics")
            .then_some(())
    });
}

#[tokio::test]
async fn a_plugin_stuck_in_get_costs_a_request_its_cache_timeout_and_nothing_else() {
    let lib = plugin("fixture_blocking_plugin");
    let server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        // The memory tier in front: its hits must not wait for the stuck plugin.
        .env("FIB_CACHE", "memory+sleepy")
        .env("FIB_CACHE_TIMEOUT", "250ms")
        .start();
    let first = get(server.addr, "/fib/20").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(json(&first)["result"], 6765);
    assert_eq!(first.header("x-cache"), Some("miss"));
    let live = get(server.addr, "/livez").await;
    assert_eq!(live.status, 200, "{}", live.body);
    let second = get(server.addr, "/fib/20").await;
    assert_eq!(json(&second)["result"], 6765);
    assert_eq!(
        second.header("x-cache"),
        Some("hit"),
        "from the memory tier"
    );

    // The plugin's `get` was entered, and all of the above was answered before its 10 s sleep
    // ended.
    support::eventually("the plugin's get", Duration::from_secs(10), || {
        server
            .log()
            .contains("sleepy: get blocks its thread")
            .then_some(())
    });
    assert!(
        !server.log().contains("sleepy: get woke up"),
        "the answers waited for the plugin:\n{}",
        server.log()
    );
    // Counted, and logged once for the outage, naming the backend and the cause.
    assert!(server.metric("fibcache_cache_errors_total").await >= 1.0);
    let warning = support::eventually("the timeout's warning", Duration::from_secs(10), || {
        server
            .log()
            .lines()
            .find(|l| l.contains("cache unavailable"))
            .map(str::to_owned)
    });
    assert!(warning.contains("backend=sleepy"), "{warning}");
    assert!(warning.contains("no answer within 250ms"), "{warning}");
    assert_eq!(
        server.log().matches("cache unavailable").count(),
        1,
        "one line per outage:\n{}",
        server.log()
    );
}

/// The fixture's panic message, as the text format writes it: its newline escaped.
const PANIC_ON_ONE_LINE: &str = r"get(fib:20) always panics\nand says so on a second line";

#[tokio::test]
async fn a_burst_of_panics_logs_one_whole_line_a_second_with_the_count_held_back() {
    const CLIENTS: usize = 4;
    const EACH: usize = 100;
    let lib = plugin("fixture_panicking_plugin");
    let started = Instant::now();
    let mut server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .env("FIB_CACHE", "panicky")
        // Every failure of this test is then a panic: no cache call can time out.
        .env("FIB_CACHE_TIMEOUT", "30s")
        // The panics the throttle holds back, at debug: one line for each.
        .args(["--log-level", "info,fibcache_server::cache=debug"])
        .start();
    let addr = server.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let resp = get(addr, "/fib/20").await;
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    assert_eq!(json(&resp), serde_json::json!({"result": 6765}));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // A throttled warning says how many were held back since the one before it, so the last
    // panics of the burst are reported by the first one a whole period later: ask again until
    // the log accounts for every panic so far. Each held-back panic has a debug line, so that
    // the test can tell when the log has caught up with a request (lines reach it in batches).
    let more = std::cell::Cell::new(0);
    let panics = support::eventually_async(
        "a warning that reports the end of the burst",
        Duration::from_secs(20),
        || async {
            assert_eq!(json(&get(addr, "/fib/20").await)["result"], 6765);
            more.set(more.get() + 1);
            let errors = server.metric("fibcache_cache_errors_total").await as u64;
            let log = support::eventually("the log to catch up", Duration::from_secs(10), || {
                let log = server.log();
                let lines = log.lines().filter(|l| l.contains("always panics")).count();
                (lines as u64 == errors).then_some(log)
            });
            (accounted(&log) == errors).then_some(errors)
        },
    )
    .await;
    // One cache read a request, and each one panicked.
    assert_eq!(panics, (CLIENTS * EACH + more.get()) as u64);
    let status = server.signal_and_wait("TERM", Duration::from_secs(30));
    let elapsed = started.elapsed();
    let log = server.log();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");

    for line in log.lines() {
        assert!(
            is_whole_text_line(line),
            "a broken line: {line:?}\nlog:\n{log}"
        );
    }
    let panic_lines: Vec<&str> = log.lines().filter(|l| is_panic_warning(l)).collect();
    // The throttle admits one line a period: one per started second, and a little slack.
    let most = elapsed.as_secs() as usize + 1 + 2;
    assert!(
        panic_lines.len() <= most,
        "{} lines about {panics} panics in {elapsed:?} (at most {most}), the first ones:\n{}",
        panic_lines.len(),
        panic_lines[..panic_lines.len().min(5)].join("\n")
    );
    assert!(
        panic_lines
            .first()
            .is_some_and(|l| l.contains(PANIC_ON_ONE_LINE)),
        "the first panic is not logged with its message:\n{log}"
    );
    // Each line stands for itself and the ones it held back: every panic is accounted for.
    assert_eq!(accounted(&log), panics, "log:\n{log}");
    assert!(
        panic_lines.iter().any(|l| suppressed(l) > Some(0)),
        "no count held back:\n{log}"
    );
}

#[tokio::test]
async fn in_json_every_line_is_an_object_and_the_panic_message_keeps_its_newline() {
    let lib = plugin("fixture_panicking_plugin");
    let mut server = Spawn::new()
        .arg("--plugin")
        .arg(lib.display().to_string())
        .args(["--log-format", "json"])
        .env("FIB_CACHE", "panicky")
        .start();
    for _ in 0..3 {
        assert_eq!(json(&get(server.addr, "/fib/20").await)["result"], 6765);
    }
    let status = server.signal_and_wait("TERM", Duration::from_secs(30));
    let log = server.log();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    let panics: Vec<&str> = events
        .iter()
        .filter_map(|event| event["cause"].as_str())
        .filter(|cause| cause.contains("always panics"))
        .collect();
    assert!(
        panics
            .first()
            .is_some_and(|c| c.contains("get(fib:20) always panics\nand says so on a second line")),
        "{log}"
    );
}

/// Whether `line` is a whole line of the text format: a timestamp, then a level.
fn is_whole_text_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(time), Some(level)) = (words.next(), words.next()) else {
        return false;
    };
    // `2026-11-27T13:23:17.123456Z`
    let shape = b"0000-00-00T00:00:00.000000Z";
    let time_ok = time.len() == shape.len()
        && time.bytes().zip(shape).all(|(b, &s)| match s {
            b'0' => b.is_ascii_digit(),
            _ => b == s,
        });
    time_ok && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

/// The panics a log accounts for: each warning about one stands for itself and the ones it
/// held back.
fn accounted(log: &str) -> u64 {
    log.lines()
        .filter(|l| is_panic_warning(l))
        .map(|line| 1 + suppressed(line).unwrap_or_else(|| panic!("no count in {line:?}")))
        .sum()
}

/// Whether `line` is a warning about a panic of the fixture (not a held-back one's debug line).
fn is_panic_warning(line: &str) -> bool {
    line.contains(" WARN ") && line.contains("always panics")
}

/// The `suppressed=` count of a throttled warning.
fn suppressed(line: &str) -> Option<u64> {
    let rest = &line[line.find("suppressed=")? + "suppressed=".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// A subscriber for this process that keeps what plugins log.

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn captured() -> Vec<String> {
    EVENTS.lock().unwrap().clone()
}

/// Installs, once, a global subscriber at DEBUG that keeps the events re-emitted from plugins
/// (target `fibcache::plugin`) as `LEVEL target: message field=value...`. Must run before a
/// plugin is loaded: the plugin learns the host's level at load.
fn capture_plugin_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(Capture).expect("no other subscriber");
    });
}

struct Capture;

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::DEBUG
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        if metadata.target() != "fibcache::plugin" {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.push_str(&format!(" {value:?}"));
                } else {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
        }
        let mut fields = Fields(format!("{} {}:", metadata.level(), metadata.target()));
        event.record(&mut fields);
        EVENTS.lock().unwrap().push(fields.0.replace('"', ""));
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}
