//! fibcache embedded in axum the way the README shows (`examples/embed_axum.rs`) keeps what
//! the binary has: its series in the application's own Prometheus registry, the mount prefix
//! in the OpenAPI document and in errors, the application's layers around it, and the
//! `/readyz` 503 window before a graceful shutdown.

mod support;

use std::time::Duration;

use support::{examples, get, json, metric_value, Spawn};

fn embed_axum(args: &[&str]) -> support::Server {
    Spawn::new()
        .program(examples::binary("embed_axum"))
        .args(args.iter().copied())
        .start()
}

#[tokio::test]
async fn the_applications_registry_holds_fibcaches_series_next_to_its_own() {
    let server = embed_axum(&["--cache", "nop"]);
    assert_eq!(get(server.addr, "/").await.status, 200);
    let fib = get(server.addr, "/api/fib/12").await;
    assert_eq!(fib.body, r#"{"result":144}"#);
    assert_eq!(
        fib.header("x-served-by"),
        Some("embed_axum"),
        "the app's layer"
    );

    let metrics = get(server.addr, "/metrics").await.body;
    let sample = |name: &str| {
        metric_value(&metrics, name).unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(sample("embed_greetings_total"), 1.0);
    assert_eq!(
        sample(r#"fibcache_requests_total{route="/fib",status="200"}"#),
        1.0
    );
    assert_eq!(sample("fibcache_computations_started_total"), 1.0);
    assert!(sample("process_resident_memory_bytes") > 0.0);
}

#[tokio::test]
async fn the_mount_prefix_is_in_the_document_and_in_errors() {
    let server = embed_axum(&["--cache", "nop"]);
    let document = json(&get(server.addr, "/api/openapi.json").await);
    assert_eq!(document["servers"][0]["url"], "/api");
    let missing = get(server.addr, "/api/nowhere").await;
    assert_eq!(missing.status, 404);
    assert_eq!(json(&missing)["error"], r#"no route for "/api/nowhere""#);
    let out_of_range = get(server.addr, "/api/fib/93").await;
    assert_eq!(out_of_range.status, 422);
}

#[tokio::test]
async fn after_sigterm_readyz_is_503_while_requests_are_still_served() {
    let mut server = embed_axum(&["--cache", "nop", "--shutdown-delay", "30s"]);
    assert_eq!(get(server.addr, "/api/readyz").await.status, 200);
    server.signal("TERM");
    let addr = server.addr;
    support::eventually_async(
        "/api/readyz answers 503",
        Duration::from_secs(10),
        || async { (get(addr, "/api/readyz").await.status == 503).then_some(()) },
    )
    .await;
    // Still serving through the window.
    assert_eq!(get(addr, "/api/fib/10").await.body, r#"{"result":55}"#);
    assert_eq!(get(addr, "/").await.status, 200);
    assert!(
        server.wait(Duration::ZERO).is_none(),
        "exited inside its shutdown delay"
    );
    drop(server);
}

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let mut server = embed_axum(&["--cache", "nop"]);
    assert_eq!(get(server.addr, "/api/fib/10").await.status, 200);
    let status = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", Duration::from_secs(30));
        (status, server.log())
    })
    .await
    .unwrap();
    assert_eq!(status.0.and_then(|s| s.code()), Some(0), "{}", status.1);
    assert!(status.1.contains("embed_axum: stopped"), "{}", status.1);
}
