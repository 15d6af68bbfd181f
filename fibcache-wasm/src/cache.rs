//! [`WasmCache`]: a backend served by one component instance on a thread of its own.
//!
//! A store is single-threaded and a call takes `&mut` of it, so each cache the registry creates
//! owns one instance, served by one thread that takes calls from a bounded queue. That keeps
//! guest code off the async workers (a looping guest holds its own thread, for at most the
//! call's time limit), serializes calls as the instance needs without a lock on the request
//! path, and lets the thread keep running between calls while the queue is busy. A call whose
//! caller has given up (the server abandons one after `--cache-timeout`) is skipped, not run.
//! The thread ends when the cache is dropped.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Claims, Config, Error, Expiry, Result};
use tokio::sync::oneshot;
use wasmtime::component::ComponentExportIndex;

use crate::instance::{Fault, Live};
use crate::{Plugin, Slot};

/// Calls waiting for the instance at most; one more is refused at once as unavailable.
const QUEUE: usize = 256;

/// What the host passes to `open`: the `config` record of `wit/cache.wit`.
#[derive(Clone, wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct GuestConfig {
    capacity: u64,
    #[component(name = "op-timeout-ms")]
    op_timeout_ms: u64,
    #[component(name = "max-value-len")]
    max_value_len: Option<u64>,
    vars: Vec<(String, String)>,
}

impl GuestConfig {
    pub(crate) fn from(config: &Config) -> Self {
        GuestConfig {
            capacity: config.capacity().get() as u64,
            op_timeout_ms: millis(config.op_timeout()),
            max_value_len: config.max_value_len().map(|max| max.get() as u64),
            vars: config
                .explicit_vars()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A call waiting in the queue: it runs against the instance and answers its caller.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The serving thread's state: the instance, and what it needs to re-open it after a trap or
/// move to a reloaded version.
struct Worker {
    live: Live,
    plugin: Arc<Plugin>,
    /// Where a reload puts the component's new version.
    slot: Arc<Slot>,
    /// The version of `slot` that `plugin` is.
    version: u64,
    name: String,
    config: GuestConfig,
    limit: Duration,
    max_value_len: Option<usize>,
}

/// A backend of a WebAssembly component: every operation is a call of the instance's thread.
pub struct WasmCache {
    name: String,
    jobs: SyncSender<Job>,
    has_expiry: bool,
    has_claims: bool,
}

impl WasmCache {
    /// Starts the instance's thread and opens the backend `name` in it.
    pub(crate) async fn open(slot: Arc<Slot>, name: &str, config: &Config) -> Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let guest_config = GuestConfig::from(config);
        slot.record_open(name, &guest_config);
        let (version, plugin) = slot.current();
        let worker = Worker {
            slot,
            version,
            live: Live::new(plugin.pre.clone(), plugin.max_memory),
            name: name.to_owned(),
            config: guest_config,
            limit: config.op_timeout(),
            max_value_len: config.max_value_len().map(|max| max.get()),
            plugin: plugin.clone(),
        };
        std::thread::Builder::new()
            .name(format!("wasm-{name}"))
            .spawn(move || {
                let mut worker = worker;
                while let Ok(job) = queue.recv() {
                    // Between calls: one in flight finishes on the version it started on.
                    worker.follow_reloads();
                    job(&mut worker);
                }
            })
            .map_err(|e| Error::config(name, format!("cannot start its thread: {e}")))?;
        let cache = WasmCache {
            name: name.to_owned(),
            jobs,
            has_expiry: plugin.exports.remaining.is_some(),
            has_claims: plugin.exports.claims.is_some(),
        };
        // Open once now, so that a guest that refuses (or traps in) `open` fails at creation.
        cache
            .run(|w| w.ensure_open())
            .await
            .map_err(|err| Error::config(name, format!("cannot open: {}", err.chain())))?;
        Ok(cache)
    }

    /// Runs `op` on the instance's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Worker) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |worker| {
            if !tx.is_closed() {
                let _ = tx.send(op(worker));
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::unavailable(&self.name, "too many calls queued"));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::unavailable(&self.name, "its thread has stopped"));
            }
        }
        rx.await
            .map_err(|_| Error::unavailable(&self.name, "its thread has stopped"))?
    }
}

impl Worker {
    /// Moves to the component's newest version if a reload swapped one in: a fresh instance
    /// of it, opened on the next call. The old version is freed with its last instance.
    fn follow_reloads(&mut self) {
        if self.slot.version() != self.version {
            let (version, plugin) = self.slot.current();
            self.live = Live::new(plugin.pre.clone(), plugin.max_memory);
            self.plugin = plugin;
            self.version = version;
        }
    }

    /// Calls the guest's `func`, re-opening the backend first if the instance is fresh, and
    /// maps its failures to [`Error`]s.
    fn call<P, R, T>(
        &mut self,
        func: impl FnOnce(&crate::world::Exports) -> Option<ComponentExportIndex>,
        params: P,
        then: impl FnOnce(R) -> Result<T>,
    ) -> Result<T>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
        R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync,
    {
        self.ensure_open()?;
        // Offered only when exported, and a reload keeps the capabilities: always there.
        let func = func(&self.plugin.exports)
            .ok_or_else(|| Error::backend(&self.name, "the guest does not export this"))?;
        let result = self.live.call(&func, params, self.limit, then);
        result.map_err(|fault| self.fault(fault))?
    }

    /// Opens the backend in a fresh instance (the first call, or the first after a trap).
    fn ensure_open(&mut self) -> Result<()> {
        if !self.live.is_fresh() {
            return Ok(());
        }
        let open = self.plugin.exports.open;
        let params = (self.name.clone(), self.config.clone());
        let name = self.name.clone();
        let outcome = self.live.call(
            &open,
            params,
            self.limit,
            |(result,): (std::result::Result<(), String>,)| result,
        );
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(Error::backend(name, refused)),
            Err(fault) => Err(self.fault(fault)),
        }
    }

    fn fault(&self, fault: Fault) -> Error {
        tracing::debug!(backend = %self.name, cause = %fault, "wasm instance dropped");
        match fault {
            Fault::Timeout => Error::unavailable(&self.name, fault.to_string()),
            Fault::Trap(_) => Error::backend(&self.name, fault.to_string()),
        }
    }
}

/// A guest's own error string as a backend error.
fn guest<T>(name: &str, result: std::result::Result<T, String>) -> Result<T> {
    result.map_err(|msg| Error::backend(name, format!("the guest failed: {msg}")))
}

#[async_trait]
impl Cache for WasmCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.run(move |w| {
            let name = w.name.clone();
            let max = w.max_value_len;
            w.call(
                |e| Some(e.get),
                (key,),
                move |(result,): (std::result::Result<Option<String>, String>,)| {
                    // The lifted copy is bounded by the instance's memory cap; wasmtime runs
                    // the guest's post-return (which frees the value) inside the call, so the
                    // value cannot be measured in place first.
                    match guest(&name, result)? {
                        Some(value) if max.is_some_and(|max| value.len() > max) => {
                            Err(Error::backend(
                                &name,
                                format!(
                                    "refused a value of {} bytes (bound {})",
                                    value.len(),
                                    max.unwrap_or_default()
                                ),
                            ))
                        }
                        value => Ok(value),
                    }
                },
            )
        })
        .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let params = (key.to_owned(), value.to_owned(), millis(ttl));
        self.run(move |w| {
            let name = w.name.clone();
            w.call(
                |e| Some(e.set),
                params,
                move |(result,): (std::result::Result<(), String>,)| guest(&name, result),
            )
        })
        .await
    }

    fn expiry(&self) -> Option<&dyn Expiry> {
        self.has_expiry.then_some(self as &dyn Expiry)
    }

    fn claims(&self) -> Option<&dyn Claims> {
        self.has_claims.then_some(self as &dyn Claims)
    }
}

#[async_trait]
impl Expiry for WasmCache {
    async fn remaining(&self, key: &str) -> Result<Option<Duration>> {
        let key = key.to_owned();
        self.run(move |w| {
            let name = w.name.clone();
            w.call(
                |e| e.remaining,
                (key,),
                move |(result,): (std::result::Result<Option<u64>, String>,)| {
                    guest(&name, result).map(|ms| ms.map(Duration::from_millis))
                },
            )
        })
        .await
    }
}

/// Which of the three `claims` functions to call, if the guest exports them.
fn claims_fn(e: &crate::world::Exports, at: usize) -> Option<ComponentExportIndex> {
    e.claims.map(|claims| claims[at])
}

type BoolResult = (std::result::Result<bool, String>,);

#[async_trait]
impl Claims for WasmCache {
    async fn claim(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let params = (key.to_owned(), token.to_owned(), millis(ttl));
        self.run(move |w| {
            let name = w.name.clone();
            w.call(
                |e| claims_fn(e, 0),
                params,
                move |(r,): BoolResult| guest(&name, r),
            )
        })
        .await
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let params = (key.to_owned(), token.to_owned(), millis(ttl));
        self.run(move |w| {
            let name = w.name.clone();
            w.call(
                |e| claims_fn(e, 1),
                params,
                move |(r,): BoolResult| guest(&name, r),
            )
        })
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool> {
        let params = (key.to_owned(), token.to_owned());
        self.run(move |w| {
            let name = w.name.clone();
            w.call(
                |e| claims_fn(e, 2),
                params,
                move |(r,): BoolResult| guest(&name, r),
            )
        })
        .await
    }
}
