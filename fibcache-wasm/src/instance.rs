//! The sandbox: one wasmtime engine for every component, and [`Live`], one instance of a
//! component in a store of its own with its limits.
//!
//! - **Nothing granted.** Guests built with `std` import WASI 0.2 even when they use none of
//!   it, so WASI is linked, with a [`WasiCtx`] that grants nothing: no preopened directory, no
//!   environment variable or argument, no socket address, stdio closed.
//! - **Memory.** A [`StoreLimits`] caps each instance's linear memories at `max_memory` bytes
//!   and makes a refused `memory.grow` trap rather than fail quietly.
//! - **Time.** Epoch interruption: a thread of the engine's own advances the epoch every
//!   [`TICK`], and each call gets a deadline of its time limit in ticks (rounded up, plus one),
//!   past which it traps. The thread stops when the engine is dropped.
//! - **Recovery.** An instance whose call trapped (a guest's `unreachable`, the memory cap,
//!   the deadline) is in an unknown state: [`Live::call`] drops it and instantiates the
//!   component again from its [`InstancePre`] (linking done once), then re-opens the backend.

use std::time::Duration;

use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, InstancePre, Lift, Linker, Lower, ResourceTable,
    TypedFunc,
};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances: the granularity of every call's time limit.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// The engine (with epoch interruption on) and the WASI linker that every component loaded
/// together shares.
pub(crate) struct Host {
    pub engine: Engine,
    pub linker: Linker<Sandbox>,
}

impl Host {
    /// A new engine, its epoch thread (which stops when the engine is dropped), and a linker
    /// with WASI 0.2 (synchronous).
    pub fn new() -> Result<Host, String> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| one_line(&e))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| one_line(&e))?;
        Ok(Host { engine, linker })
    }
}

/// What a store holds for its instance: a WASI context granting nothing, and the limits.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why a call into the guest failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// It ran past its time limit and was interrupted.
    Timeout,
    /// It trapped (or could not be instantiated); the message is one line.
    Trap(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Timeout => f.write_str("the guest ran past its time limit and was interrupted"),
            Fault::Trap(msg) => write!(f, "the guest trapped: {msg}"),
        }
    }
}

/// One instance of a component in its own store. Single-threaded, like the store.
pub(crate) struct Live {
    pre: InstancePre<Sandbox>,
    max_memory: usize,
    store: Store<Sandbox>,
    /// `None` after a trap, until the next call instantiates again.
    instance: Option<wasmtime::component::Instance>,
}

impl Live {
    /// A store for `pre`, capped at `max_memory` bytes; instantiated on the first call.
    pub fn new(pre: InstancePre<Sandbox>, max_memory: usize) -> Live {
        let store = store(pre.engine(), max_memory);
        Live {
            pre,
            max_memory,
            store,
            instance: None,
        }
    }

    /// Whether the instance was lost (a trap) and the next call starts a fresh one.
    pub fn is_fresh(&self) -> bool {
        self.instance.is_none()
    }

    /// Calls the export `func` with `params` within `limit`, instantiating first if needed,
    /// and maps the results with `then`.
    ///
    /// # Errors
    /// A [`Fault`] if instantiation or the call trapped or timed out; the instance is then
    /// dropped, so the next call starts from a fresh one.
    pub fn call<P, R, T>(
        &mut self,
        func: &ComponentExportIndex,
        params: P,
        limit: Duration,
        then: impl FnOnce(R) -> T,
    ) -> Result<T, Fault>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync,
    {
        self.store.set_epoch_deadline(ticks(limit));
        let instance = match self.instance {
            Some(instance) => instance,
            None => {
                // A fresh store: the old one's memory (all of it, up to the cap) is freed.
                self.store = store(self.pre.engine(), self.max_memory);
                self.store.set_epoch_deadline(ticks(limit));
                let instance = self.pre.instantiate(&mut self.store).map_err(fault)?;
                self.instance = Some(instance);
                instance
            }
        };
        let typed: TypedFunc<P, R> = instance
            .get_typed_func(&mut self.store, func)
            .map_err(|e| Fault::Trap(one_line(&e)))?;
        match typed.call(&mut self.store, params) {
            Ok(results) => Ok(then(results)),
            Err(err) => {
                self.instance = None;
                Err(fault(err))
            }
        }
    }
}

/// A store that grants nothing, capped at `max_memory` bytes, whose deadline traps.
fn store(engine: &Engine, max_memory: usize) -> Store<Sandbox> {
    let sandbox = Sandbox {
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(max_memory)
            .trap_on_grow_failure(true)
            .build(),
    };
    let mut store = Store::new(engine, sandbox);
    store.limiter(|sandbox| &mut sandbox.limits);
    store.epoch_deadline_trap();
    store
}

/// `limit` in epoch ticks, rounded up, plus the tick already under way.
fn ticks(limit: Duration) -> u64 {
    let tick = TICK.as_nanos();
    u64::try_from(limit.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
}

fn fault(err: wasmtime::Error) -> Fault {
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Timeout,
        _ => Fault::Trap(one_line(&err)),
    }
}

/// An error and its causes on one line (wasmtime's backtraces are several).
pub(crate) fn one_line(err: &wasmtime::Error) -> String {
    let chain: Vec<String> = err
        .chain()
        .map(|cause| {
            let text = cause.to_string();
            let first = text.lines().next().unwrap_or_default().trim().to_owned();
            first
        })
        .filter(|s| !s.is_empty())
        .collect();
    chain.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_rounded_up_to_whole_ticks_plus_one() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(TICK), 2);
        assert_eq!(ticks(TICK + Duration::from_nanos(1)), 3);
        assert_eq!(ticks(Duration::from_millis(250)), 51);
    }
}
