//! WebAssembly component plugins (feature `wasm`): the guests in `guests/` are built by this
//! test run for `wasm32-wasip2`, then loaded into this process and into the real `fibcache`
//! binary.
//!
//! Run with `cargo test --features wasm,memory --test wasm`. The guests need the target:
//! `rustup target add wasm32-wasip2` (the first test to need a guest fails naming that command
//! when it is missing). Without the feature, only the check that a `.wasm` plugin is then a
//! start-up error naming it runs.

mod support;

#[cfg(all(feature = "wasm", feature = "memory"))]
#[path = "wasm/components.rs"]
mod components;

#[cfg(not(feature = "wasm"))]
#[test]
fn without_the_feature_a_wasm_plugin_is_a_start_up_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("fibcache-wasm-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memcache.wasm");
    std::fs::write(&path, b"\0asm").unwrap();
    let exit = support::Spawn::new()
        .args(["--plugin", path.to_str().unwrap(), "--list-backends"])
        .run_to_exit();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(exit.code(), Some(2), "{}", exit.stderr);
    let lines: Vec<&str> = exit.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", exit.stderr);
    assert!(lines[0].contains("--features wasm"), "{}", lines[0]);
}
