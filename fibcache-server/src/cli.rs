//! The `fibcache` command line: flags and environment variables, logging, start-up, exit codes.
//!
//! Every flag has an environment variable, and `--help` shows both. A start-up failure
//! (unknown backend, bad setting, plugin that cannot be loaded) prints one line naming the fix
//! and exits with status 2.
//!
//! A binary of your own gets the whole command line with one call, under its own name,
//! version and description, and serves every backend linked into it (yours included):
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     fibcache_server::cli::main(fibcache_server::about!())
//! }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use fibcache_core::{Cache, Config, Descriptor, Registry};

mod about;
mod plugins;
mod settings_args;

pub use about::About;
pub use settings_args::SettingsArgs;

use crate::logging::LogFormat;
use crate::server::{bind, run, ConnLimits};
use crate::{App, TierSpec};
use plugins::{load_plugins, reload_on_sighup, Reloadable};
use settings_args::duration;

/// The flags; name, version and description come from the [`About`] given to [`main`].
#[derive(Debug, Parser)]
#[command(long_about = None)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "FIB_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Port to bind; 0 picks a free one (the bound address is logged).
    #[arg(long, env = "FIB_PORT", default_value_t = 8080)]
    port: u16,

    /// The per-request settings and the backend.
    #[command(flatten)]
    settings: SettingsArgs,

    /// A client that has not sent its request head by then is dropped; an idle keep-alive
    /// connection is closed after the same time.
    #[arg(long, env = "FIB_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_timeout: Duration,

    /// Connections open at once; one more is answered 503 and closed.
    #[arg(long, env = "FIB_MAX_CONNECTIONS", default_value = "1024")]
    max_connections: NonZeroUsize,

    /// How long in-flight requests may finish after SIGINT/SIGTERM, once the listener is
    /// closed; a second SIGINT/SIGTERM exits at once (status 1).
    #[arg(long, env = "FIB_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    shutdown_grace: Duration,

    /// After SIGINT/SIGTERM, keep accepting and serving this long with /readyz at 503, so that
    /// load balancers stop sending first; then close the listener and drain.
    #[arg(long, env = "FIB_SHUTDOWN_DELAY", default_value = "0s", value_parser = duration)]
    shutdown_delay: Duration,

    /// Log level or filter (e.g. debug, or info,fibcache_server=debug); RUST_LOG adds to it.
    #[arg(long, env = "FIB_LOG", default_value = "info")]
    log_level: String,

    /// Log format.
    #[arg(long, env = "FIB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Shared library (feature `dynamic`) or WebAssembly component `.wasm` (feature `wasm`) to
    /// load backends from; repeatable, `:`-separated in the environment variable.
    #[arg(long = "plugin", env = "FIB_CACHE_PLUGIN", value_delimiter = ':')]
    plugins: Vec<PathBuf>,

    /// Memory cap of each WebAssembly plugin instance (e.g. 64MiB, 512KiB); a guest that grows
    /// past it traps, and its call is a miss.
    #[cfg(feature = "wasm")]
    #[arg(long, env = "FIB_WASM_MAX_MEMORY", default_value = "64MiB", value_parser = fibcache_wasm::parse_size)]
    wasm_max_memory: usize,

    /// Print the available backends, one a line (name, origin, summary), and exit.
    #[arg(long)]
    list_backends: bool,

    /// Print a completion script for this shell and exit.
    #[arg(long, value_enum, value_name = "SHELL")]
    completions: Option<Shell>,
}

/// The shells `--completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The command line of the binary described by `about`.
fn command(about: About) -> clap::Command {
    // `fibcache 0.3.0 (memory, redis, dynamic)`: which build this is, at a glance. Leaked once:
    // clap wants a `'static` string and the process has one command line.
    let version: &'static str =
        Box::leak(format!("{} ({})", about.version(), crate::features_summary()).into_boxed_str());
    Args::command()
        .name(about.name())
        .bin_name(about.name())
        .version(version)
        .about(about.description())
        // A variable set to the empty string counts as unset (`FIB_CACHE=` is no backend
        // named ""), as backend settings read through `Config::var` do.
        .mut_args(|arg| match arg.get_env() {
            Some(name) if std::env::var_os(name).is_some_and(|v| v.is_empty()) => {
                arg.env(None::<&'static str>)
            }
            _ => arg,
        })
}

/// A start-up failure: printed as one line, exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Startup(String);

fn startup(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Startup(err.to_string()))
}

/// Runs the server binary described by `about`: parses the command line, starts the server,
/// and returns the process exit code (0 after a graceful shutdown, 2 for a start-up failure).
pub fn main(about: About) -> ExitCode {
    main_with(about, &[])
}

/// [`main`], with `backends` added to the registry by their descriptors: the way to serve a
/// backend of a library crate that the binary would otherwise not reference, which the linker
/// then cannot drop (see [`Registry::with`]).
///
/// ```no_run
/// # mod my_backends { pub static MINE: &fibcache_core::Descriptor = &fibcache_core::nop::NOP; }
/// fn main() -> std::process::ExitCode {
///     fibcache_server::cli::main_with(fibcache_server::about!(), &[my_backends::MINE])
/// }
/// ```
pub fn main_with(about: About, backends: &[&'static Descriptor]) -> ExitCode {
    let args = match command(about)
        .try_get_matches()
        .and_then(|matches| Args::from_arg_matches(&matches))
    {
        Ok(args) => args,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            // clap's own rendering is several lines: the first says what is wrong, and a
            // `tip:` line may suggest the flag that was meant.
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let tip = rendered
                .lines()
                .find_map(|line| line.trim().strip_prefix("tip: "))
                .map(|tip| format!("; {tip}"))
                .unwrap_or_default();
            eprintln!("{}: error: {first}{tip} (see --help)", about.name());
            return ExitCode::from(2);
        }
    };
    if let Some(shell) = args.completions {
        clap_complete::generate(
            clap_complete::Shell::from(shell),
            &mut command(about),
            about.name(),
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let _guard = match crate::logging::init(&args.log_level, args.log_format) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{}: error: {err:#}", about.name());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!(
                "{}: error: cannot start the async runtime: {err}",
                about.name()
            );
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(args, about, backends));
    // Computations still running after the grace period were cancelled and stop within
    // milliseconds; do not wait on anything longer than that.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = if err.is::<Startup>() { 2 } else { 1 };
            // Flush what was logged before the error, so the error is the last line.
            drop(_guard);
            eprintln!("{}: error: {err:#}", about.name());
            ExitCode::from(code)
        }
    }
}

/// The registry of this binary: built-in backends, then plugins.
fn registry(
    args: &Args,
    about: About,
    backends: &[&'static Descriptor],
) -> anyhow::Result<(Registry, Reloadable)> {
    let mut registry = crate::backends().map_err(startup)?;
    for descriptor in backends {
        registry = registry.with(descriptor).map_err(startup)?;
    }
    if about.package() == "fibcache" {
        // The `fibcache` package forwards the backends' features under their own names.
        for (name, feature) in fibcache_backends::OPTIONAL {
            registry.note_optional(name, feature);
        }
    }
    load_plugins(args, &mut registry).map(|reloadable| (registry, reloadable))
}

async fn serve(args: Args, about: About, backends: &[&'static Descriptor]) -> anyhow::Result<()> {
    let (registry, reloadable) = registry(&args, about, backends)?;
    if args.list_backends {
        for backend in registry.iter() {
            println!(
                "{:<12}  {:<28}  {}",
                backend.name(),
                backend.origin().to_string(),
                backend.summary()
            );
        }
        return Ok(());
    }
    let name = match args.settings.cache() {
        Some(spec) => spec.to_owned(),
        None => crate::default_backend(&registry).to_owned(),
    };
    let settings = args.settings.settings().map_err(startup)?;
    let config = args.settings.cache_config();
    let tiers = tiers(&registry, &name, &config).await?;
    let addr = resolve(&args.host, args.port)?;
    let listener = bind(addr).map_err(|e| startup(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let max_n = settings.max_n();
    let max_computes = settings.max_computes();
    let app = App::tiered(tiers, settings);
    let limits = ConnLimits {
        header_timeout: args.header_timeout,
        max_connections: args.max_connections.get(),
        shutdown_grace: args.shutdown_grace,
        shutdown_delay: args.shutdown_delay,
    };
    let signals = ShutdownSignals::listen();
    // Before "listening" too: SIGHUP's default action ends the process.
    let reloads = reload_on_sighup(reloadable, app.clone());
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!(
            addr = %local,
            backend = %name,
            max_n,
            max_computes,
            "listening"
        );
    } else {
        // With `--port 0` the operator has no other way to learn the port: say it even when
        // the log level hides info lines.
        eprintln!("{}: listening addr={local} backend={name}", about.name());
    }
    let served = run_until_signalled(signals, listener, app, limits).await;
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The backends `spec` names (`memory`, or tiers nearest first: `memory+redis`), created from
/// `config`, each checked as a single name is: a spec that does not parse ([`TierSpec`]), or a
/// name unknown or not compiled in, is a start-up error.
async fn tiers(
    registry: &Registry,
    spec: &str,
    config: &Config,
) -> anyhow::Result<Vec<(String, Arc<dyn Cache>)>> {
    let spec: TierSpec = spec
        .parse()
        .map_err(|err| startup(format!("--cache: {err}")))?;
    // Every name is checked before any backend is created.
    for name in spec.names() {
        registry.get(name).map_err(startup)?;
    }
    let mut tiers: Vec<(String, Arc<dyn Cache>)> = Vec::with_capacity(spec.names().len());
    for name in spec.names() {
        let cache = registry.create(name, config).await.map_err(startup)?;
        tiers.push((name.to_owned(), cache));
    }
    Ok(tiers)
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| startup(format!("cannot resolve --host {host:?}: {e}")))?
        .next()
        .ok_or_else(|| startup(format!("--host {host:?} resolves to no address")))
}

/// The process's SIGINT and SIGTERM, listened for from the moment it is created (before the
/// server says it listens, so that a signal sent right after is never the default "die at
/// once").
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    tracing::warn!(cause = %err, signal = name, "cannot listen for this signal");
                    None
                }
            };
            ShutdownSignals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// The name of the next SIGINT or SIGTERM, once it arrives.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => "SIGINT",
                () = recv(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "ctrl-c"
        }
    }
}

/// [`run`] until the first SIGINT or SIGTERM, then its drain; a second signal during the drain
/// stops waiting: an error, so that the process exits at once with status 1 and says why.
async fn run_until_signalled(
    mut signals: ShutdownSignals,
    listener: tokio::net::TcpListener,
    app: App,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let (first, first_seen) = tokio::sync::oneshot::channel::<()>();
    let server = run(listener, app, limits, async {
        let _ = first_seen.await;
    });
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return Ok(()),
        signal = signals.next() => {
            tracing::info!(signal, "shutdown requested; a second signal exits at once");
            let _ = first.send(());
        }
    }
    tokio::select! {
        () = server => Ok(()),
        signal = signals.next() => Err(anyhow::anyhow!(
            "{signal} during shutdown: exiting at once, without waiting for requests in progress"
        )),
    }
}
