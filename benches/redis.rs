//! fibcache's `redis` backend against the raw `redis` client doing the same commands, in the
//! same run, against one `redis-server` the bench starts on a free loopback port (and kills by
//! PID at the end).
//!
//! Run with `cargo bench --features redis --bench redis` (needs `redis-server` on the `PATH`;
//! `scripts/bench.sh` installs it). Pairs to compare:
//! - `redis/get_hit/{fibcache,raw}` and `redis/set/{fibcache,raw}`: one operation at a time,
//!   so `time` is a loopback round trip plus each client's own cost. The difference between
//!   the two lines is what the backend adds (the connection manager in front of the
//!   multiplexed connection, the health flag, error mapping and the `Arc<dyn Cache>` call); it
//!   should be a small fraction of the round trip.
//! - `redis/get_hit_x32/{fibcache,raw}`: 32 tasks issue gets at once over the one multiplexed
//!   connection, as a busy server does; one iteration is one get on each task and `thrpt` is
//!   gets per second in total. Redis pipelines them, so this is far above 1 / round trip.
//!
//! Both clients run on the same single-threaded tokio runtime; `redis-server` runs on the
//! other core of this 2-core machine.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fibcache_core::{Cache, Config, Registry};
use redis::aio::MultiplexedConnection;

use fibcache_test_support::redis_server::RedisServer;

// Referenced so that the linker keeps the backends crate and its registrations.
use fibcache_backends as _;

const KEY: &str = "fib:30";
const VALUE: &str = "832040";
const TTL: Duration = Duration::from_secs(3600);
const TASKS: usize = 32;

/// One of the two clients compared; a clone shares the client's one connection.
trait Client: Clone + Send + 'static {
    /// `GET` of a present key.
    fn get(&mut self) -> impl Future<Output = ()> + Send;
    /// `SET key value PX ttl`.
    fn set(&mut self) -> impl Future<Output = ()> + Send;
}

/// fibcache's backend, as the server holds it.
#[derive(Clone)]
struct Fibcache(Arc<dyn Cache>);

impl Client for Fibcache {
    async fn get(&mut self) {
        let value = self.0.get(KEY).await.expect("a hit");
        std::hint::black_box(value);
    }

    async fn set(&mut self) {
        self.0.set(KEY, VALUE, TTL).await.expect("SET");
    }
}

/// The `redis` crate's multiplexed connection, used directly.
#[derive(Clone)]
struct Raw(MultiplexedConnection);

impl Client for Raw {
    async fn get(&mut self) {
        let value: Option<String> = redis::cmd("GET")
            .arg(KEY)
            .query_async(&mut self.0)
            .await
            .expect("GET");
        std::hint::black_box(value.expect("a hit"));
    }

    async fn set(&mut self) {
        redis::cmd("SET")
            .arg(KEY)
            .arg(VALUE)
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async::<()>(&mut self.0)
            .await
            .expect("SET");
    }
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
}

/// `iters` operations, one after the other.
fn sequential<C: Client>(rt: &tokio::runtime::Runtime, client: &C, op: Op, iters: u64) -> Duration {
    let mut client = client.clone();
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..iters {
            match op {
                Op::Get => client.get().await,
                Op::Set => client.set().await,
            }
        }
        start.elapsed()
    })
}

/// `iters` gets on each of [`TASKS`] tasks at once.
fn concurrent<C: Client>(rt: &tokio::runtime::Runtime, client: &C, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let mut client = client.clone();
            tasks.spawn(async move {
                for _ in 0..iters {
                    client.get().await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("benchmark task");
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let rt = common::current_thread();

    let config = Config::default().with_var("REDIS_URL", url.clone());
    let fibcache = Fibcache(
        rt.block_on(Registry::new().expect("registry").create("redis", &config))
            .expect("the redis backend connects"),
    );
    let raw = Raw(rt
        .block_on(async {
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
        })
        .expect("the raw client connects"));
    sequential(&rt, &fibcache, Op::Set, 1);

    let mut group = c.benchmark_group("redis");
    for (name, op) in [("get_hit", Op::Get), ("set", Op::Set)] {
        group.bench_function(format!("{name}/fibcache"), |b| {
            b.iter_custom(|iters| sequential(&rt, &fibcache, op, iters))
        });
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter_custom(|iters| sequential(&rt, &raw, op, iters))
        });
    }
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function(format!("get_hit_x{TASKS}/fibcache"), |b| {
        b.iter_custom(|iters| concurrent(&rt, &fibcache, iters))
    });
    group.bench_function(format!("get_hit_x{TASKS}/raw"), |b| {
        b.iter_custom(|iters| concurrent(&rt, &raw, iters))
    });
    group.finish();
    // Killed by PID when dropped; explicit so that it is not dropped before the benches run.
    drop(server);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
