//! The root package's test scaffolding: everything of `fibcache-test-support` (the real binary
//! on a free port, HTTP clients, `redis-server`, [`eventually`]), and what only this package's
//! tests can know: the path Cargo gives its binary, the examples built with its features, and
//! the `Cache` conformance suite.
//!
//! Every integration test file does `mod support;` and uses only the parts it needs.
#![allow(dead_code, unused_imports)]

pub mod conformance;
pub mod examples;

pub use fibcache_test_support::*;

/// The path of the `fibcache` binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_fibcache");
