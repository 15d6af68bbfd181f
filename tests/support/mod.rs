//! The root package's test scaffolding: everything of `fibcache-test-support` (the real binary
//! on a free port, HTTP clients, `redis-server`, [`eventually`]), and what only this package's
//! tests can know: the examples built with its features, and the `Cache` conformance suite run
//! against the backends it compiles in.
//!
//! Every integration test file does `mod support;` and uses only the parts it needs.
#![allow(dead_code, unused_imports)]

pub mod conformance;
pub mod examples;

pub use fibcache_test_support::*;
