//! The `Cache` conformance suite, as `fibcache-core` publishes it (feature `testing`): run
//! against every backend this build can create, the ones loaded from plugins included.

pub use fibcache_core::testing::conformance as run;
