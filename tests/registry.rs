//! The registry holds exactly the backends the enabled features promise, and choosing one that
//! is not there fails clearly, with exit status 2 from the binary.
//!
//! This is what catches the linker dropping an unreferenced backend crate together with its
//! `inventory` registrations: the binary's `--list-backends` must show every enabled backend.

mod support;

use std::sync::Arc;

use fibcache_core::{Backend, Config, Origin, Registry, RegistryErrorKind};
use support::Spawn;

// The test binary itself must reference the crate, as the server binary does.
use fibcache_backends as _;

/// The backends this build's features promise, sorted.
fn promised() -> Vec<&'static str> {
    let mut names = vec!["nop"];
    if cfg!(feature = "memory") {
        names.push("memory");
    }
    if cfg!(feature = "redis") {
        names.push("redis");
    }
    names.sort_unstable();
    names
}

#[test]
fn the_registry_holds_exactly_the_promised_backends() {
    let registry = Registry::new().unwrap();
    assert_eq!(registry.names(), promised());
    let mut compiled: Vec<&str> = fibcache_backends::COMPILED_IN.to_vec();
    compiled.push("nop");
    compiled.sort_unstable();
    assert_eq!(compiled, promised());
}

#[test]
fn the_binary_lists_exactly_the_promised_backends() {
    let out = Spawn::new().arg("--list-backends").run_to_exit();
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let names: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, promised(), "stdout:\n{}", out.stdout);
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 3, "name, origin, summary: {line:?}");
        assert!(
            fields[1].starts_with("static:"),
            "origin of a built-in: {line:?}"
        );
    }
}

#[test]
fn an_unknown_backend_is_exit_2_with_the_available_ones() {
    let out = Spawn::new().env("FIB_CACHE", "memcached").run_to_exit();
    assert_eq!(out.code(), Some(2));
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(line.contains("unknown backend `memcached`"), "{line}");
    assert!(
        line.contains(&format!("available: {}", promised().join(", "))),
        "{line}"
    );
}

/// The one line of a start-up that must fail with exit status 2.
fn exit_2_line(cache: &str) -> String {
    let out = Spawn::new().env("FIB_CACHE", cache).run_to_exit();
    assert_eq!(out.code(), Some(2), "FIB_CACHE={cache:?}: {}", out.stderr);
    let line = out.stderr.trim().to_owned();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    line
}

#[test]
fn a_tier_list_with_a_bad_name_anywhere_is_exit_2() {
    let line = exit_2_line("nop+memcached");
    assert!(line.contains("unknown backend `memcached`"), "{line}");
    let line = exit_2_line("memcached+nop");
    assert!(line.contains("unknown backend `memcached`"), "{line}");
    if !cfg!(feature = "redis") {
        let line = exit_2_line("nop+redis");
        assert!(line.contains("rebuild with `--features redis`"), "{line}");
    }
}

#[test]
fn a_tier_list_naming_a_backend_twice_or_an_empty_tier_is_exit_2() {
    let line = exit_2_line("nop+nop");
    assert!(line.contains("backend `nop` is listed twice"), "{line}");
    for spec in ["nop+", "+nop", "nop++nop"] {
        let line = exit_2_line(spec);
        assert!(line.contains("has an empty tier"), "{spec:?}: {line}");
    }
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_known_backend_that_is_not_compiled_in_names_its_feature() {
    let out = Spawn::new().args(["--cache", "redis"]).run_to_exit();
    assert_eq!(out.code(), Some(2));
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(
        line.contains("backend `redis` is not compiled in; rebuild with `--features redis`"),
        "{line}"
    );
}

#[cfg(not(feature = "memory"))]
#[test]
fn without_memory_the_default_is_nop() {
    let out = Spawn::new().args(["--cache", "memory"]).run_to_exit();
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("rebuild with `--features memory`"));
}

#[tokio::test]
async fn unknown_and_not_compiled_errors_from_the_api() {
    let mut registry = Registry::new().unwrap();
    fibcache_backends::note_optional(&mut registry);
    let err = registry
        .create("nope", &Config::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), RegistryErrorKind::Unknown, "{err}");
    assert_eq!(err.name(), "nope");
    assert_eq!(err.available(), promised());
    assert!(
        err.to_string()
            .contains("must be referenced by the binary: `use that_crate as _;`"),
        "names the likely cause and the fix: {err}"
    );
    registry.note_optional("imaginary", "imagination");
    let err = registry
        .create("imaginary", &Config::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), RegistryErrorKind::NotCompiledIn, "{err}");
    assert_eq!(err.feature(), Some("imagination"));
    assert!(
        err.to_string().starts_with(
            "backend `imaginary` is not compiled in; rebuild with `--features imagination`"
        ),
        "{err}"
    );
}

#[test]
fn a_name_added_twice_is_refused_and_the_first_kept() {
    let mut registry = Registry::new().unwrap();
    let nop = registry.get("nop").unwrap().clone();
    let impostor = Backend::new(
        "nop",
        "another nop",
        Origin::Plugin {
            path: "impostor.so".into(),
        },
        Arc::new(|_config| {
            Box::pin(async {
                let cache: Arc<dyn fibcache_core::Cache> = Arc::new(fibcache_core::nop::NopCache);
                Ok(cache)
            })
        }),
    );
    let err = registry.add(impostor).unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Duplicate, "{err}");
    assert_eq!(err.name(), "nop");
    assert_eq!(
        err.origins(),
        Some(("plugin:impostor.so", "static:fibcache-core"))
    );
    assert_eq!(registry.names(), promised());
    // The same backend added again, by its descriptor or as found, is no duplicate.
    registry.add(nop).unwrap();
    let registry = registry.with(&fibcache_core::nop::NOP).unwrap();
    assert_eq!(registry.names(), promised());
}

#[test]
fn start_up_mistakes_are_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cache-ttl", "soon"], "--cache-ttl"),
        (&["--max-n", "93"], "--max-n"),
        (&["--port", "70000"], "--port"),
        (&["--cache-capacity", "0"], "--cache-capacity"),
        (&["--log-format", "xml"], "--log-format"),
        (&["--log-level", "info,=[bad"], "--log-level"),
        (
            &["--log-level", "warning"],
            "valid levels: trace, debug, info, warn, error, off",
        ),
        (
            &["--log-level", "degub"],
            "valid levels: trace, debug, info, warn, error, off",
        ),
        (
            &["--log-level", "inf"],
            "valid levels: trace, debug, info, warn, error, off",
        ),
        (&["--log-level", "info,hyper=loud"], "`loud`"),
        (&["--host", "not a host"], "--host"),
    ];
    for (args, mention) in cases {
        let out = Spawn::new().args(args.iter().copied()).run_to_exit();
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: one line: {line:?}");
        assert!(line.contains(mention), "{args:?}: {line}");
    }
}

#[cfg(not(feature = "dynamic"))]
#[test]
fn plugin_without_the_dynamic_feature_names_the_feature() {
    let out = Spawn::new()
        .args(["--plugin", "/tmp/libx.so"])
        .run_to_exit();
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("--features dynamic"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1);
}

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let out = Spawn::new().arg("--help").run_to_exit();
    assert_eq!(out.code(), Some(0));
    for (flag, env) in [
        ("--host", "FIB_HOST"),
        ("--port", "FIB_PORT"),
        ("--cache", "FIB_CACHE"),
        ("--cache-ttl", "FIB_CACHE_TTL"),
        ("--cache-capacity", "FIB_CACHE_CAPACITY"),
        ("--cache-prefix", "FIB_CACHE_PREFIX"),
        ("--max-n", "FIB_MAX_N"),
        ("--max-computes", "FIB_MAX_COMPUTES"),
        ("--compute-timeout", "FIB_COMPUTE_TIMEOUT"),
        ("--header-timeout", "FIB_HEADER_TIMEOUT"),
        ("--shutdown-grace", "FIB_SHUTDOWN_GRACE"),
        ("--log-level", "FIB_LOG"),
        ("--log-format", "FIB_LOG_FORMAT"),
        ("--plugin", "FIB_CACHE_PLUGIN"),
    ] {
        assert!(out.stdout.contains(flag), "{flag} missing from --help");
        assert!(
            out.stdout.contains(&format!("env: {env}")),
            "{env} missing from --help"
        );
    }
    assert!(out.stdout.contains("--list-backends"));
}

#[test]
fn rust_log_with_a_word_that_is_not_a_level_is_refused_too() {
    let out = Spawn::new().env("RUST_LOG", "warning").run_to_exit();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(
        line.contains("RUST_LOG") && line.contains("valid levels"),
        "{line}"
    );
}

#[test]
fn an_environment_variable_set_to_the_empty_string_counts_as_unset() {
    let out = Spawn::new()
        .env("FIB_CACHE", "")
        .env("FIB_CACHE_PLUGIN", "")
        .env("FIB_LOG", "")
        .env("FIB_MAX_N", "")
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, promised());
}

#[tokio::test]
async fn an_empty_fib_cache_serves_the_default_backend() {
    let server = Spawn::new().env("FIB_CACHE", "").start();
    let health = support::json(&support::get(server.addr, "/healthz").await);
    let default = if cfg!(feature = "memory") {
        "memory"
    } else {
        "nop"
    };
    assert_eq!(health["backend"], default);
}

#[test]
fn completions_for_each_shell_name_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Spawn::new().args(["--completions", shell]).run_to_exit();
        assert_eq!(out.code(), Some(0), "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains("cache"),
            "{shell}: no --cache in the script"
        );
        assert!(out.stdout.contains("fibcache"), "{shell}");
    }
    let out = Spawn::new().args(["--completions", "tcsh"]).run_to_exit();
    assert_eq!(out.code(), Some(2));
}

#[test]
fn a_mistyped_flag_gets_a_suggestion_on_its_one_line() {
    let out = Spawn::new().args(["--cach", "memory"]).run_to_exit();
    assert_eq!(out.code(), Some(2));
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(
        line.contains("'--cach'") && line.contains("'--cache'"),
        "{line}"
    );
}
