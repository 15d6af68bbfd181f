//! The HTTP contract of PRODUCT.md, against the real `fibcache` binary on a free port.

mod support;

use support::{get, json, request, Server, Spawn};

#[cfg(feature = "memory")]
#[tokio::test]
async fn answers_match_the_exact_fibonacci_and_the_second_ask_is_a_hit() {
    let server = Server::start(&[]);
    for n in [0u64, 1, 2, 10, 30] {
        let first = get(server.addr, &format!("/fib/{n}")).await;
        assert_eq!(first.status, 200, "n = {n}: {}", first.body);
        assert_eq!(first.header("x-cache"), Some("miss"), "n = {n}");
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(
            json(&first)["result"],
            fibcache_server::fib::fib_fast(n).unwrap(),
            "n = {n}"
        );

        let second = get(server.addr, &format!("/fib/{n}")).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.header("x-cache"), Some("hit"), "n = {n}");
        assert_eq!(
            json(&second)["result"],
            fibcache_server::fib::fib_fast(n).unwrap()
        );
    }
    let hits = r#"fibcache_cache_hits_total{tier="memory"}"#;
    assert_eq!(server.metric(hits).await, 5.0);
    assert_eq!(server.metric("fibcache_cache_misses_total").await, 5.0);
}

#[tokio::test]
async fn the_body_is_exactly_the_documented_json() {
    let server = Server::start(&[]);
    let resp = get(server.addr, "/fib/30").await;
    assert_eq!(resp.body, r#"{"result":832040}"#);
}

#[tokio::test]
async fn max_n_bounds_what_is_accepted() {
    let server = Server::start(&["--max-n", "20"]);
    assert_eq!(get(server.addr, "/fib/20").await.status, 200);
    let resp = get(server.addr, "/fib/21").await;
    assert_eq!(resp.status, 422);
    assert!(json(&resp)["error"]
        .as_str()
        .unwrap()
        .contains("between 0 and 20"));
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn spellings_of_one_number_share_one_cache_entry() {
    let server = Server::start(&[]);
    assert_eq!(
        get(server.addr, "/fib/5").await.header("x-cache"),
        Some("miss")
    );
    for spelling in ["05", "+5", "0005", "5?ignored=query"] {
        let resp = get(server.addr, &format!("/fib/{spelling}")).await;
        assert_eq!(resp.status, 200, "{spelling}");
        assert_eq!(resp.header("x-cache"), Some("hit"), "{spelling}");
        assert_eq!(json(&resp)["result"], 5);
    }
}

#[tokio::test]
async fn nop_never_hits() {
    let server = Spawn::new().env("FIB_CACHE", "nop").start();
    for _ in 0..3 {
        let resp = get(server.addr, "/fib/12").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-cache"), Some("miss"));
        assert_eq!(json(&resp)["result"], 144);
    }
    let hits = r#"fibcache_cache_hits_total{tier="nop"}"#;
    assert_eq!(server.metric(hits).await, 0.0);
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        3.0
    );
}

#[tokio::test]
async fn bad_input_gets_the_contract_status_and_a_json_error_and_serving_goes_on() {
    let server = Server::start(&[]);
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/fib/abc", 400),
        ("GET", "/fib/", 400),
        ("GET", "/fib/1.5", 400),
        ("GET", "/fib/0x10", 400),
        ("GET", "/fib/%35", 400),
        ("GET", "/fib/-1", 422),
        ("GET", "/fib/93", 422),
        ("GET", "/fib/99999999999999999999999", 422),
        ("GET", "/fib/9223372036854775808", 422),
        ("GET", "/fib/5/6", 404),
        ("GET", "/fib/5/", 404),
        ("GET", "/fib", 404),
        ("GET", "/", 404),
        ("GET", "/nope", 404),
        ("POST", "/fib/5", 405),
        ("DELETE", "/healthz", 405),
        ("PUT", "/metrics", 405),
        ("POST", "/openapi.json", 405),
    ];
    for &(method, path, status) in cases {
        let resp = request(server.addr, method, path).await;
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.body);
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let error = json(&resp)["error"].clone();
        assert!(
            error.as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: no error field in {}",
            resp.body
        );
        if status == 422 {
            assert!(
                error.as_str().unwrap().contains("between 0 and 92"),
                "{path}: {error}"
            );
        }
        if status == 405 {
            assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    // Still serving, and nothing above was computed or cached.
    assert_eq!(json(&get(server.addr, "/fib/10").await)["result"], 55);
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"fibcache_requests_total{route="/fib",status="400"}"#)
            .await,
        5.0
    );
    assert_eq!(
        server
            .metric(r#"fibcache_requests_total{route="/fib",status="422"}"#)
            .await,
        4.0
    );
}

#[tokio::test]
async fn healthz_names_the_backend() {
    let server = Server::start(&[]);
    let resp = get(server.addr, "/healthz").await;
    assert_eq!(resp.status, 200);
    let body = json(&resp);
    assert_eq!(body["status"], "ok");
    let expected = if cfg!(feature = "memory") {
        "memory"
    } else {
        "nop"
    };
    assert_eq!(body["backend"], expected);
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn tiers_answer_nearest_first_and_count_hits_by_tier() {
    let server = Server::start(&["--cache", "nop+memory"]);
    let health = json(&get(server.addr, "/healthz").await);
    assert_eq!(health["backend"], "nop+memory", "{health}");
    for expected in ["miss", "hit", "hit"] {
        let resp = get(server.addr, "/fib/12").await;
        assert_eq!(json(&resp)["result"], 144);
        assert_eq!(resp.header("x-cache"), Some(expected));
    }
    assert_eq!(
        server
            .metric(r#"fibcache_cache_hits_total{tier="nop"}"#)
            .await,
        0.0
    );
    assert_eq!(
        server
            .metric(r#"fibcache_cache_hits_total{tier="memory"}"#)
            .await,
        2.0
    );
    assert_eq!(server.metric(r#"fibcache_cache_up{tier="nop"}"#).await, 1.0);
}

#[tokio::test]
async fn without_a_tier_that_offers_claims_each_flight_counts_as_unsupported() {
    let unsupported = r#"fibcache_claims_total{outcome="unsupported"}"#;
    let server = Server::start(&[]);
    get(server.addr, "/fib/11").await;
    get(server.addr, "/fib/13").await;
    assert_eq!(server.metric(unsupported).await, 2.0);
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        2.0
    );

    let off = Server::start(&["--cluster-coalescing", "off"]);
    get(off.addr, "/fib/11").await;
    assert_eq!(
        off.metric(unsupported).await,
        0.0,
        "nothing is counted when off"
    );
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn metrics_expose_the_contract_series() {
    let server = Server::start(&[]);
    get(server.addr, "/fib/10").await;
    get(server.addr, "/fib/10").await;
    let resp = get(server.addr, "/metrics").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for series in [
        r#"fibcache_requests_total{route="/fib",status="200"}"#,
        r#"fibcache_cache_hits_total{tier="memory"}"#,
        r#"fibcache_cache_up{tier="memory"}"#,
        "fibcache_cache_misses_total",
        "fibcache_cache_errors_total",
        "fibcache_computations_started_total",
        r#"fibcache_computations_finished_total{outcome="ok"}"#,
        r#"fibcache_computations_finished_total{outcome="cancelled"}"#,
        r#"fibcache_computations_finished_total{outcome="timeout"}"#,
        r#"fibcache_request_duration_seconds_count{route="/fib"}"#,
        r#"fibcache_request_duration_seconds_bucket{route="/fib",le="+Inf"}"#,
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            support::metric_value(&resp.body, series).is_some(),
            "{series} missing from:\n{}",
            resp.body
        );
    }
    assert_eq!(
        support::metric_value(
            &resp.body,
            r#"fibcache_requests_total{route="/fib",status="200"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        support::metric_value(
            &resp.body,
            r#"fibcache_computations_finished_total{outcome="ok"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let server = Server::start(&[]);
    let resp = request(server.addr, "HEAD", "/fib/10").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "");
}

#[tokio::test]
async fn the_served_openapi_document_is_3_1_with_this_servers_max_n() {
    let server = Server::start(&["--max-n", "30"]);
    let resp = get(server.addr, "/openapi.json").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let document = json(&resp);
    let version = document["openapi"].as_str().expect("an `openapi` field");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    let n = &document["components"]["parameters"]["n"]["schema"]["anyOf"];
    assert_eq!(n[0]["maximum"], 30, "{n}");
    assert_eq!(
        n[1]["pattern"], "^(?:0*(?:[0-9]|[1-2][0-9]|30)|-0+)$",
        "{n}"
    );
    for path in [
        "/fib/{n}",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "GET {path}");
    }

    let head = request(server.addr, "HEAD", "/openapi.json").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    let served = r#"fibcache_requests_total{route="/openapi.json",status="200"}"#;
    assert_eq!(server.metric(served).await, 2.0);
}

#[tokio::test]
async fn json_log_format_writes_json_lines() {
    let server = Spawn::new()
        .args(["--log-format", "json", "--log-level", "debug"])
        .start();
    get(server.addr, "/fib/7").await;
    // The request line is written by a background thread.
    let line = support::eventually(
        "the request line for /fib/7",
        std::time::Duration::from_secs(30),
        || {
            let log = server.log();
            let line = log.lines().find(|l| l.contains("\"path\":\"/fib/7\""))?;
            Some(line.to_owned())
        },
    );
    let event: serde_json::Value = serde_json::from_str(&line).expect("log line is JSON");
    assert_eq!(event["status"], 200);
    assert_eq!(event["method"], "GET");
    assert_eq!(event["level"], "DEBUG");
}

/// Requests `/fib/7` and `/healthz` from a server started with `spawn`, stops it, and returns
/// everything it logged: the writer flushes at exit, so a line that was ever logged is there.
async fn log_of_two_requests(spawn: Spawn) -> String {
    let mut server = spawn.start();
    get(server.addr, "/fib/7").await;
    get(server.addr, "/healthz").await;
    tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", std::time::Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(0));
        server.log()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_default_level_logs_no_line_per_request() {
    let log = log_of_two_requests(Spawn::new()).await;
    assert!(log.contains("shutdown requested"), "logging works:\n{log}");
    assert!(!log.contains("/fib/7"), "log:\n{log}");
    assert!(!log.contains("/healthz"), "log:\n{log}");
}

#[tokio::test]
async fn log_level_debug_logs_one_line_per_request() {
    let log = log_of_two_requests(Spawn::new().args(["--log-level", "debug"])).await;
    for path in ["/fib/7", "/healthz"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("path=\"{path}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "{path}:\n{log}");
        assert!(lines[0].contains("status=200"), "{}", lines[0]);
    }
}

#[tokio::test]
async fn log_level_error_silences_even_the_shutdown_lines() {
    let log = log_of_two_requests(Spawn::new().env("FIB_LOG", "error")).await;
    // The bound address is still printed, so the harness can find the server.
    assert!(log.contains("listening addr="), "{log}");
    assert!(!log.contains("/fib/7"), "log:\n{log}");
    assert!(!log.contains("shutdown requested"), "log:\n{log}");
}

#[tokio::test]
async fn probes_say_alive_and_ready_with_the_cache_state() {
    let server = Server::start(&[]);
    let live = get(server.addr, "/livez").await;
    assert_eq!(live.status, 200);
    assert_eq!(json(&live)["status"], "ok");
    let ready = get(server.addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        json(&ready),
        serde_json::json!({"status": "ready", "cache": "ok"})
    );
    for probe in ["/livez", "/readyz"] {
        let resp = request(server.addr, "POST", probe).await;
        assert_eq!(resp.status, 405, "{probe}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{probe}");
    }
}

#[tokio::test]
async fn probes_and_scrapes_are_counted_apart_from_fib() {
    let server = Server::start(&[]);
    get(server.addr, "/fib/8").await;
    for path in ["/livez", "/readyz", "/healthz", "/nowhere"] {
        get(server.addr, path).await;
    }
    let body = get(server.addr, "/metrics").await.body;
    let sample = |route: &str, status: u16| {
        let series = format!(r#"fibcache_requests_total{{route="{route}",status="{status}"}}"#);
        support::metric_value(&body, &series).unwrap_or_else(|| panic!("{series} in\n{body}"))
    };
    assert_eq!(sample("/fib", 200), 1.0);
    assert_eq!(sample("/livez", 200), 1.0);
    assert_eq!(sample("/readyz", 200), 1.0);
    assert_eq!(sample("/healthz", 200), 1.0);
    assert_eq!(sample("other", 404), 1.0);
    let fib_count = r#"fibcache_request_duration_seconds_count{route="/fib"}"#;
    assert_eq!(support::metric_value(&body, fib_count), Some(1.0));
    let features = {
        let mut f = Vec::new();
        for (on, name) in [
            (cfg!(feature = "memory"), "memory"),
            (cfg!(feature = "redis"), "redis"),
            (cfg!(feature = "dynamic"), "dynamic"),
            (cfg!(feature = "wasm"), "wasm"),
        ] {
            if on {
                f.push(name);
            }
        }
        f.join(",")
    };
    let build = format!(
        r#"fibcache_build_info{{version="{}",features="{features}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(support::metric_value(&body, &build), Some(1.0), "{body}");
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let server = Server::start(&[]);
    get(server.addr, "/fib/8").await;
    get(server.addr, "/nowhere").await;
    let body = get(server.addr, "/metrics").await.body;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool is missing; install it (Debian/Ubuntu: apt-get install prometheus) or run \
             the README's test command, which does",
        );
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{body}");
    assert_eq!(said, "", "promtool prints nothing for a clean exposition");
}
