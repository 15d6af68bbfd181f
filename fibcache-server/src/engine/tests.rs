//! The engine on tokio's paused clock, with a scripted store and computations the test
//! controls: each test pins one behaviour that a plausible bug would break.

mod kit;

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fibcache_core::Cache;
use tokio::time::Instant;

use self::kit::{Behaviour, Controlled, Life, Plain, Scripted};
use super::{Answer, Engine};
use crate::cluster::{CLAIM_TTL, RETRY_CLAIM};
use crate::metrics::{Claimed, Finished, Metrics};
use crate::tiers::{Tiers, UNKNOWN_LIFETIME};
use crate::{Settings, SettingsBuilder};

fn settings() -> SettingsBuilder {
    Settings::builder()
        .max_computes(NonZeroUsize::new(2).unwrap())
        .compute_timeout(Duration::from_secs(30))
        .queue_wait(Duration::from_millis(100))
        .ttl(Duration::from_secs(15))
}

/// An engine over `tiers` (nearest first) running `workload`.
fn engine(
    tiers: &[(&str, Arc<dyn Cache>)],
    settings: SettingsBuilder,
    workload: &Arc<Controlled>,
) -> (Engine, Arc<Metrics>) {
    let settings = settings.build().unwrap();
    let metrics = Arc::new(Metrics::new());
    let caches = tiers
        .iter()
        .map(|(name, cache)| (name.to_string(), cache.clone()))
        .collect();
    let tiers = Tiers::new(caches, &settings, &metrics);
    let engine = Engine::new(tiers, workload.clone(), &settings, metrics.clone());
    (engine, metrics)
}

/// Moves the paused clock on by `span` in small steps, letting every task run at each: the
/// clock does not move by itself while a computation runs on a blocking thread.
async fn run_for(span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        tokio::time::advance(Duration::from_millis(10)).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_nearer_tier_is_skipped_and_a_farther_value_is_a_hit() {
    let (near, far) = (Scripted::new(), Scripted::new());
    near.fail(true);
    far.put("fib:10", "55", Life::Forever);
    let work = Controlled::new(Behaviour::Instant);
    let (engine, metrics) = engine(&[("near", near), ("far", far)], settings(), &work);
    assert_eq!(engine.fib(10).await, Answer::Hit(55));
    assert_eq!(work.count(), 0);
    assert_eq!(
        metrics.sample("fibcache_computations_started_total") as u64,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn n_above_max_n_is_an_answer() {
    let work = Controlled::new(Behaviour::Instant);
    let (engine, _) = engine(&[("s", Scripted::new())], settings().max_n(40), &work);
    assert_eq!(engine.fib(41).await, Answer::OutOfRange);
    assert_eq!(engine.fib(u64::MAX).await, Answer::OutOfRange);
    assert_eq!(engine.fib(40).await, Answer::Miss(102_334_155));
}

#[tokio::test(start_paused = true)]
async fn a_planted_claim_is_no_claim_and_costs_no_wait() {
    let limit = Duration::from_secs(1);
    let plantings = [
        ("no lifetime", Life::Forever),
        (
            "a lifetime above a claim's",
            Life::Until(Instant::now() + Duration::from_secs(999_999)),
        ),
    ];
    for (what, life) in plantings {
        let store = Scripted::new();
        store.put("fib:claim:37", "x", life);
        let work = Controlled::new(Behaviour::Instant);
        let (engine, metrics) = engine(
            &[("shared", store)],
            settings().compute_timeout(limit),
            &work,
        );
        let asked = Instant::now();
        assert_eq!(engine.fib(37).await, Answer::Miss(24_157_817), "{what}");
        assert!(
            asked.elapsed() < limit,
            "{what}: waited {:?}",
            asked.elapsed()
        );
        assert_eq!(work.count(), 1, "{what}");
        assert_eq!(metrics.claims_of(Claimed::Foreign), 1, "{what}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_claim_nobody_renews_holds_a_waiter_one_claim_lifetime_at_most() {
    let store = Scripted::new();
    let lapses = Instant::now() + CLAIM_TTL - Duration::from_millis(200);
    store.put("fib:claim:20", "someone", Life::Until(lapses));
    let work = Controlled::new(Behaviour::Instant);
    let (engine, metrics) = engine(&[("shared", store)], settings(), &work);
    let asked = Instant::now();
    assert_eq!(engine.fib(20).await, Answer::Miss(6765));
    assert!(asked.elapsed() <= CLAIM_TTL, "waited {:?}", asked.elapsed());
    assert_eq!(metrics.claims_of(Claimed::TookOver), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_on_a_claim_renewed_forever_is_bounded_by_the_compute_timeout() {
    let store = Scripted::new();
    store.put("fib:claim:20", "someone", Life::Rolling(CLAIM_TTL));
    let work = Controlled::new(Behaviour::Instant);
    let limit = Duration::from_secs(5);
    let (engine, metrics) = engine(
        &[("shared", store)],
        settings().compute_timeout(limit),
        &work,
    );
    let asked = Instant::now();
    assert_eq!(engine.fib(20).await, Answer::TimedOut);
    let waited = asked.elapsed();
    assert!(
        waited >= limit && waited < limit + Duration::from_millis(50),
        "{waited:?}"
    );
    assert_eq!(work.count(), 0);
    assert_eq!(
        metrics.claims_of(Claimed::TimedOut),
        1,
        "a timed-out wait is counted"
    );
}

#[tokio::test(start_paused = true)]
async fn the_claim_winner_looks_for_the_value_once_more_before_computing() {
    let store = Scripted::new();
    // Another instance writes the value (and releases its claim) between this instance's
    // read and its claim.
    store.write_on_claim("fib:30", "832040");
    let work = Controlled::new(Behaviour::Instant);
    let (engine, metrics) = engine(&[("shared", store)], settings(), &work);
    assert_eq!(engine.fib(30).await, Answer::Miss(832_040));
    assert_eq!(work.count(), 0, "no computation");
    assert_eq!(metrics.claims_of(Claimed::Waited), 1);
}

#[tokio::test(start_paused = true)]
async fn a_computation_outliving_its_claim_keeps_it_and_runs_once_across_instances() {
    let store = Scripted::new();
    let work = Controlled::new(Behaviour::Gated);
    let shared: Arc<dyn Cache> = store.clone();
    let (first, first_metrics) = engine(&[("shared", shared.clone())], settings(), &work);
    let (second, second_metrics) = engine(&[("shared", shared)], settings(), &work);
    let one = tokio::spawn(async move { first.fib(33).await });
    work.wait_started(1).await;
    let two = tokio::spawn(async move { second.fib(33).await });
    // Three claim lifetimes: without renewal the claim would lapse and the second instance
    // would take over and compute too.
    run_for(CLAIM_TTL * 3).await;
    work.release();
    assert_eq!(one.await.unwrap(), Answer::Miss(3_524_578));
    assert_eq!(two.await.unwrap(), Answer::Miss(3_524_578));
    assert_eq!(work.count(), 1, "exactly one computation");
    assert!(store.renewals.load(Ordering::Relaxed) >= 6);
    assert_eq!(first_metrics.claims_of(Claimed::Won), 1);
    assert_eq!(second_metrics.claims_of(Claimed::Waited), 1);
}

/// The holder releases its claim just as this instance's last waiter leaves, at the moment the
/// waiter would try the claim again: the flight stops, counted as cancelled, and neither takes
/// the claim nor computes.
#[tokio::test(start_paused = true)]
async fn a_waiter_whose_clients_left_as_the_claim_was_released_takes_no_claim() {
    let store = Scripted::new();
    store.put(
        "fib:claim:20",
        "someone",
        Life::Until(Instant::now() + CLAIM_TTL - Duration::from_millis(100)),
    );
    let work = Controlled::new(Behaviour::Instant);
    let (engine, metrics) = engine(&[("shared", store.clone())], settings(), &work);
    let retry_at = Instant::now() + RETRY_CLAIM;
    let stopper = engine.clone();
    store.on_read("fib:20", move |store| {
        if Instant::now() >= retry_at {
            store.remove("fib:claim:20");
            stopper.stop_all();
        }
    });
    assert_eq!(engine.fib(20).await, Answer::Stopped);
    assert_eq!(metrics.claims_of(Claimed::Cancelled), 1);
    assert_eq!(metrics.claims_of(Claimed::Won), 0);
    assert_eq!(work.count(), 0);
    assert_eq!(store.peek("fib:claim:20"), None, "no claim left behind");
}

#[tokio::test(start_paused = true)]
async fn a_local_waiter_is_bounded_by_the_compute_timeout_and_the_slot_stays_taken_until_the_thread_stops(
) {
    let work = Controlled::new(Behaviour::Stubborn);
    let limit = Duration::from_secs(3);
    let settings = settings().compute_timeout(limit).cluster_coalescing(false);
    let (engine, metrics) = engine(&[("memory", Scripted::new())], settings, &work);
    let engine2 = engine.clone();
    let request = tokio::spawn(async move { engine2.fib(40).await });
    work.wait_started(1).await;
    run_for(limit).await;
    assert_eq!(request.await.unwrap(), Answer::TimedOut);
    assert_eq!(metrics.finished_of(Finished::Timeout), 1);
    // Its thread has not stopped yet: it still runs, and holds its slot.
    let running = || metrics.sample("fibcache_computations_running") as i64;
    assert_eq!(running(), 1);
    assert_eq!(engine.inner.settle.pool.free_slots(), 1);
    work.release();
    work.wait_cancelled().await;
    while running() != 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(engine.inner.settle.pool.free_slots(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_computation_is_a_failure_counted_as_panicked() {
    let work = Controlled::new(Behaviour::Panics);
    let (engine, metrics) = engine(&[("memory", Scripted::new())], settings(), &work);
    assert_eq!(engine.fib(12).await, Answer::Failed);
    assert_eq!(metrics.finished_of(Finished::Panicked), 1);
    assert_eq!(metrics.sample("fibcache_computations_running") as i64, 0);
    assert_eq!(engine.fib(13).await, Answer::Failed, "the engine goes on");
}

#[tokio::test(start_paused = true)]
async fn hopeless_computations_take_no_slot_and_small_ones_still_run() {
    let work = Controlled::hopeless_from(Behaviour::Gated, 60);
    let (engine, metrics) = engine(&[("memory", Scripted::new())], settings(), &work);
    assert_eq!(engine.fib(92).await, Answer::TooCostly);
    assert_eq!(engine.fib(91).await, Answer::TooCostly);
    work.release();
    let mut answered = 0;
    for n in 10..=25 {
        if let Answer::Miss(value) = engine.fib(n).await {
            assert_eq!(Some(value), crate::fib::fib_fast(n));
            answered += 1;
        }
    }
    assert_eq!(answered, 16);
    assert_eq!(
        metrics.sample("fibcache_computations_refused_total") as u64,
        2
    );
    assert_eq!(
        metrics.sample("fibcache_computations_started_total") as u64,
        16
    );
}

#[tokio::test(start_paused = true)]
async fn a_copy_nearer_ends_no_later_than_its_source() {
    let (near, far) = (Scripted::new(), Scripted::new());
    let source_ends = Instant::now() + Duration::from_millis(300);
    far.put("fib:15", "610", Life::Until(source_ends));
    let work = Controlled::new(Behaviour::Instant);
    let tiers: [(&str, Arc<dyn Cache>); 2] = [("near", near.clone()), ("far", far)];
    let (engine, _) = engine(&tiers, settings(), &work);
    assert_eq!(engine.fib(15).await, Answer::Hit(610));
    let (_, copy_ends) = near.peek("fib:15").expect("copied nearer");
    assert!(copy_ends.unwrap() <= source_ends);
    tokio::time::sleep_until(source_ends).await;
    assert_eq!(
        near.peek("fib:15"),
        None,
        "the copy is gone with its source"
    );
    assert_eq!(engine.fib(15).await, Answer::Miss(610));
}

#[tokio::test(start_paused = true)]
async fn a_copy_from_a_tier_that_cannot_tell_lifetimes_lives_briefly() {
    let (near, far) = (Scripted::new(), Scripted::new());
    far.put("fib:15", "610", Life::Forever);
    let work = Controlled::new(Behaviour::Instant);
    let tiers: [(&str, Arc<dyn Cache>); 2] =
        [("near", near.clone()), ("far", Arc::new(Plain(far)))];
    let (engine, _) = engine(&tiers, settings(), &work);
    let asked = Instant::now();
    assert_eq!(engine.fib(15).await, Answer::Hit(610));
    let (_, copy_ends) = near.peek("fib:15").expect("copied nearer");
    assert!(copy_ends.unwrap() <= asked + UNKNOWN_LIFETIME);
}

#[tokio::test(start_paused = true)]
async fn stopping_the_engine_cancels_a_running_computation() {
    let work = Controlled::new(Behaviour::Gated);
    let (engine, _) = engine(&[("memory", Scripted::new())], settings(), &work);
    let engine2 = engine.clone();
    let request = tokio::spawn(async move { engine2.fib(44).await });
    work.wait_started(1).await;
    engine.stop_all();
    work.wait_cancelled().await;
    assert_eq!(request.await.unwrap(), Answer::Stopped);
    engine.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_app_cancels_its_computations() {
    let work = Controlled::new(Behaviour::Gated);
    let (engine, _) = engine(&[("memory", Scripted::new())], settings(), &work);
    let request = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.fib(44).await })
    };
    work.wait_started(1).await;
    request.abort();
    drop(engine);
    // The blocking workload observes its cancellation: nothing of the engine runs on.
    work.wait_cancelled().await;
}
