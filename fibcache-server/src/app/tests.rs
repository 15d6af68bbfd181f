//! The app without HTTP: answers, and what they are counted as.
use std::future::Future;

use super::*;
use http_body_util::BodyExt;

/// A workload that panics.
struct Panics;

impl Workload for Panics {
    fn compute(
        &self,
        _n: u64,
        _cancelled: &dyn Fn() -> bool,
    ) -> Result<u64, crate::fib::Cancelled> {
        panic!("the workload panics on cue")
    }
}

#[tokio::test]
async fn a_panicking_computation_is_a_json_500_and_the_connection_stays_usable() {
    let cache: Arc<dyn Cache> = Arc::new(fibcache_core::nop::NopCache);
    let app = App::with_workload(
        vec![("nop".to_owned(), cache)],
        Settings::default(),
        Arc::new(Panics),
    );
    let request = Request::get("/fib/20").body(()).unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers().get(CONNECTION),
        None,
        "no `Connection: close`"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("fib(20) failed"),
        "{body}"
    );
    let exposition = app.metrics().encode();
    assert!(
        exposition.contains(r#"fibcache_computations_finished_total{outcome="panicked"} 1"#),
        "{exposition}"
    );
    assert!(
        exposition.contains(r#"fibcache_requests_total{route="/fib",status="500"} 1"#),
        "{exposition}"
    );
}

#[tokio::test]
async fn result_bodies_are_the_documented_json() {
    for value in [0u64, 7, 55, 832_040, 7_540_113_804_746_346_429, u64::MAX] {
        let body = result(value, "hit").into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), format!("{{\"result\":{value}}}"));
    }
}

#[tokio::test]
async fn a_request_dropped_unanswered_by_an_outer_layer_is_counted_as_cut_short() {
    let app = App::new(
        Arc::new(fibcache_core::nop::NopCache),
        "nop",
        Settings::default(),
    );
    let request = Request::get("/fib/35").body(()).unwrap();
    let mut answer = Box::pin(app.handle(request));
    // Polled once: the computation is under way, so there is no answer yet.
    let first = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    drop(answer);
    let text = app.metrics().encode();
    assert!(
        text.contains(r#"fibcache_requests_total{route="/fib",status="499"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn an_app_of_no_tiers_is_the_nop_backend() {
    let app = App::tiered(Vec::new(), Settings::default());
    assert_eq!(app.backend(), "nop");
    let answer = app.handle(Request::get("/fib/10").body(()).unwrap()).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-cache"], "miss");
}
