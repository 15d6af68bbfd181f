//! [`ClientLoops`]: a bounded load of HTTP/1.1 clients, each asking in a loop until stopped,
//! for tests that change the server under load and count what failed meanwhile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::http::get;

/// Clients asking the server in a loop, each one request at a time, until [`stop`](Self::stop).
pub struct ClientLoops {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<(u64, u64)>>,
}

impl ClientLoops {
    /// Starts `clients` loops against `addr`; the `i`-th request of client `c` asks
    /// `path(c + i)`.
    pub fn start(
        addr: SocketAddr,
        clients: u64,
        path: impl Fn(u64) -> String + Send + Sync + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = Arc::new(path);
        let clients = (0..clients)
            .map(|c| {
                let (stop, path) = (stop.clone(), path.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    let mut n = c;
                    while !stop.load(Ordering::Relaxed) {
                        if get(addr, &path(n)).await.status == 200 {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                        n += 1;
                    }
                    (ok, failed)
                })
            })
            .collect();
        ClientLoops { stop, clients }
    }

    /// Stops every loop after its request in flight; returns the requests answered 200 and
    /// the others, over all clients.
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, 0);
        for client in self.clients {
            let (ok, failed) = client.await.expect("a client loop panicked");
            total = (total.0 + ok, total.1 + failed);
        }
        total
    }
}
