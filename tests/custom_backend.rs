//! A third-party backend (examples/custom_backend.rs), written against `fibcache-core`'s public
//! API only, is listed and selectable by name in the real server.

mod support;

use support::{examples, get, json, Spawn};

#[tokio::test]
async fn the_example_backend_is_listed_selected_and_caches() {
    let bin = examples::binary("custom_backend");

    let list = Spawn::new()
        .program(&bin)
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("sharded "))
        .unwrap_or_else(|| panic!("sharded not listed:\n{}", list.stdout));
    assert!(line.contains("static:fibcache"), "{line}");
    assert!(list.stdout.lines().any(|l| l.starts_with("nop ")));

    let server = Spawn::new()
        .program(&bin)
        .env("FIB_CACHE", "sharded")
        .start();
    let health = json(&get(server.addr, "/healthz").await);
    assert_eq!(health["backend"], "sharded");
    let first = get(server.addr, "/fib/25").await;
    assert_eq!(first.header("x-cache"), Some("miss"));
    assert_eq!(json(&first)["result"], 75025);
    let second = get(server.addr, "/fib/25").await;
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(json(&second)["result"], 75025);
}
