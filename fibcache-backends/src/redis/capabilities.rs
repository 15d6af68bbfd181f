//! The optional capabilities of the `redis` backend, in both modes: how long an entry has left
//! ([`Expiry`], `PTTL`), and atomic claims on keys ([`Claims`]) for the servers that share one
//! Redis or one cluster.
//!
//! A claim is a key holding its holder's token, with a lifetime: taken by one
//! `SET <key> <token> NX PX <ms>`, which only one client can win and which never leaves a claim
//! without its lifetime. Renewing and releasing must check that the token is still the holder's
//! and act in the same step (a claim that lapsed and was taken by another server between the
//! check and the act must not be extended or deleted), so each is a small Lua script, which
//! Redis runs atomically: `GET == token` then `PEXPIRE` or `DEL`. A script touches one key, so in
//! a cluster it runs on the node that holds that key, like every other command of this backend.
//! Every failure is classified like any operation's (see `error.rs`).

use std::sync::LazyLock;
use std::time::Duration;

use fibcache_core::{async_trait, Claims, Expiry, Result};
use redis::{Cmd, ErrorKind, Script, ServerErrorKind};

use super::{ttl_millis, RedisCache};

/// Extends the claim `KEYS[1]` to `ARGV[2]` ms if it holds the token `ARGV[1]`: 1 if it did.
const RENEW: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the claim `KEYS[1]` if it holds the token `ARGV[1]`: 1 if it did.
const RELEASE: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0";

static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

#[async_trait]
impl Expiry for RedisCache {
    async fn remaining(&self, key: &str) -> Result<Option<Duration>> {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        // -2: no such key; -1: a key without a lifetime; 0: one that is expiring now.
        let ms: i64 = self.inner.query(&cmd).await?;
        Ok(u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }
}

#[async_trait]
impl Claims for RedisCache {
    async fn claim(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl));
        // `OK` when set, nil when the key exists.
        self.inner.query(&cmd).await
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.eval(
            &RENEW_SCRIPT,
            RENEW,
            key,
            &[token, &ttl_millis(ttl).to_string()],
        )
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool> {
        self.eval(&RELEASE_SCRIPT, RELEASE, key, &[token]).await
    }
}

impl RedisCache {
    /// Runs `script` (whose source is `source`) on `key` with `args`: by its hash, or by its
    /// source when Redis does not have it yet (which also makes Redis keep it for next time).
    ///
    /// Not `Script::invoke_async`, which loads a missing script with `SCRIPT LOAD`: a cluster
    /// client sends that to every node, so a claim on a live node would fail while any other
    /// node is down. `EVAL` goes to the node of `key` alone.
    async fn eval(&self, script: &Script, source: &str, key: &str, args: &[&str]) -> Result<bool> {
        let call = |command: &str, body: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(command).arg(body).arg(1).arg(key).arg(args);
            cmd
        };
        let by_hash = self.inner.run(&call("EVALSHA", script.get_hash())).await;
        match by_hash {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.inner.query(&call("EVAL", source)).await
            }
            answered => self.inner.observe(answered),
        }
    }
}
