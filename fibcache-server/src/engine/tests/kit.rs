//! What the engine's unit tests drive it with: a scripted in-process store offering `Expiry`
//! and `Claims` that fails on cue, on tokio's clock (so it runs on the paused one), and
//! workloads whose computations the test controls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Claims, Error, Expiry, Result};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::fib::{fib_fast, Cancelled, Workload};

/// How an entry's lifetime behaves.
#[derive(Clone, Copy)]
pub(super) enum Life {
    /// No lifetime: it stays until overwritten.
    Forever,
    /// It expires at this instant.
    Until(Instant),
    /// It reports `left` whenever asked and never expires: a key whose holder pushes its end
    /// forward continuously (renewed all the time).
    Rolling(Duration),
}

/// A store shared by the "instances" of a test, failing every call while told to.
#[derive(Default)]
pub(super) struct Scripted {
    entries: Mutex<HashMap<String, (String, Life)>>,
    failing: AtomicBool,
    /// Written when a claim is granted: a value another instance wrote just before.
    on_claim: Mutex<Option<(String, String)>>,
    /// Run when a key is read, before the read: what happens elsewhere at that moment.
    on_read: Mutex<Option<OnRead>>,
    pub(super) renewals: AtomicU64,
}

/// A key and what happens whenever it is read.
type OnRead = (String, Box<dyn Fn(&Scripted) + Send>);

impl Scripted {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Scripted::default())
    }

    pub(super) fn put(&self, key: &str, value: &str, life: Life) {
        let mut entries = self.entries.lock().unwrap();
        entries.insert(key.to_owned(), (value.to_owned(), life));
    }

    /// The value under `key` and when it ends, if it is there.
    pub(super) fn peek(&self, key: &str) -> Option<(String, Option<Instant>)> {
        let entries = self.entries.lock().unwrap();
        let (value, life) = entries.get(key)?;
        let ends = match *life {
            Life::Until(at) if at <= Instant::now() => return None,
            Life::Until(at) => Some(at),
            _ => None,
        };
        Some((value.clone(), ends))
    }

    pub(super) fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub(super) fn write_on_claim(&self, key: &str, value: &str) {
        *self.on_claim.lock().unwrap() = Some((key.to_owned(), value.to_owned()));
    }

    /// Runs `then` on every read of `key`, before the read.
    pub(super) fn on_read(&self, key: &str, then: impl Fn(&Scripted) + Send + 'static) {
        *self.on_read.lock().unwrap() = Some((key.to_owned(), Box::new(then)));
    }

    /// Removes `key`, as its holder's release would.
    pub(super) fn remove(&self, key: &str) {
        self.entries.lock().unwrap().remove(key);
    }

    fn read(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        self.check()?;
        if let Some((watched, then)) = self.on_read.lock().unwrap().as_ref() {
            if watched == key {
                then(self);
            }
        }
        Ok(self.live(key))
    }

    fn check(&self) -> Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Error::unavailable("scripted", "down on cue"));
        }
        Ok(())
    }

    /// The live entry under `key`, with what is left of it (`None`: no lifetime).
    fn live(&self, key: &str) -> Option<(String, Option<Duration>)> {
        let mut entries = self.entries.lock().unwrap();
        let now = Instant::now();
        let (value, life) = entries.get(key)?.clone();
        let left = match life {
            Life::Forever => None,
            Life::Until(at) if at <= now => {
                entries.remove(key);
                return None;
            }
            Life::Until(at) => Some(at - now),
            Life::Rolling(left) => Some(left),
        };
        Some((value, left))
    }
}

#[async_trait]
impl Cache for Scripted {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.read(key)?.map(|(value, _)| value))
    }

    async fn get_with_remaining(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        self.read(key)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.check()?;
        self.put(key, value, Life::Until(Instant::now() + ttl));
        Ok(())
    }

    fn expiry(&self) -> Option<&dyn Expiry> {
        Some(self)
    }

    fn claims(&self) -> Option<&dyn Claims> {
        Some(self)
    }
}

#[async_trait]
impl Expiry for Scripted {
    async fn remaining(&self, key: &str) -> Result<Option<Duration>> {
        self.check()?;
        Ok(self.live(key).and_then(|(_, left)| left))
    }
}

#[async_trait]
impl Claims for Scripted {
    async fn claim(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.check()?;
        if self.live(key).is_some() {
            return Ok(false);
        }
        self.put(key, token, Life::Until(Instant::now() + ttl));
        if let Some((key, value)) = self.on_claim.lock().unwrap().take() {
            self.put(&key, &value, Life::Until(Instant::now() + ttl));
        }
        Ok(true)
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.check()?;
        match self.live(key) {
            Some((holder, _)) if holder == token => {
                self.renewals.fetch_add(1, Ordering::Relaxed);
                self.put(key, token, Life::Until(Instant::now() + ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        match entries.get(key) {
            Some((holder, _)) if holder == token => {
                entries.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A store with `get` and `set` only (no capabilities), in front of a [`Scripted`] one.
pub(super) struct Plain(pub(super) Arc<Scripted>);

#[async_trait]
impl Cache for Plain {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        self.0.get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.0.set(key, value, ttl).await
    }
}

/// What a test's computation does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Behaviour {
    /// Answers at once.
    Instant,
    /// Runs until released (or cancelled).
    Gated,
    /// Runs until released, whether cancelled or not (a thread slow to notice).
    Stubborn,
    /// Panics.
    Panics,
}

/// A workload the test controls: counts its computations, says when one starts and when one
/// saw its cancellation, and estimates `n` at or above `hopeless_from` as taking a year.
pub(super) struct Controlled {
    behaviour: Behaviour,
    hopeless_from: u64,
    pub(super) computations: AtomicU64,
    released: AtomicBool,
    /// One permit per computation started.
    pub(super) started: Semaphore,
    /// One permit per computation that saw its cancellation.
    pub(super) cancelled: Semaphore,
}

impl Controlled {
    pub(super) fn new(behaviour: Behaviour) -> Arc<Self> {
        Controlled::hopeless_from(behaviour, u64::MAX)
    }

    pub(super) fn hopeless_from(behaviour: Behaviour, n: u64) -> Arc<Self> {
        Arc::new(Controlled {
            behaviour,
            hopeless_from: n,
            computations: AtomicU64::new(0),
            released: AtomicBool::new(false),
            started: Semaphore::new(0),
            cancelled: Semaphore::new(0),
        })
    }

    pub(super) fn release(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    pub(super) fn count(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    /// Waits until `k` computations have started (an event, not a delay).
    pub(super) async fn wait_started(&self, k: u32) {
        self.started.acquire_many(k).await.unwrap().forget();
    }

    pub(super) async fn wait_cancelled(&self) {
        self.cancelled.acquire().await.unwrap().forget();
    }
}

impl Workload for Controlled {
    fn compute(&self, n: u64, cancelled: &dyn Fn() -> bool) -> std::result::Result<u64, Cancelled> {
        self.computations.fetch_add(1, Ordering::Relaxed);
        self.started.add_permits(1);
        match self.behaviour {
            Behaviour::Instant => {}
            Behaviour::Panics => panic!("the workload panics on cue"),
            Behaviour::Stubborn => {
                while !self.released.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if cancelled() {
                    self.cancelled.add_permits(1);
                    return Err(Cancelled);
                }
            }
            Behaviour::Gated => {
                while !self.released.load(Ordering::Relaxed) {
                    if cancelled() {
                        self.cancelled.add_permits(1);
                        return Err(Cancelled);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Ok(fib_fast(n).unwrap())
    }

    fn estimate(&self, n: u64) -> Option<Duration> {
        (n >= self.hopeless_from).then_some(Duration::from_secs(365 * 86_400))
    }
}
