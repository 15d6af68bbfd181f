//! Two registrations of one name are reported, never resolved by link order.
//!
//! This test binary registers a second `nop` next to `fibcache-core`'s, so the registry of
//! this binary (and only this one) must refuse to build.

use std::time::Duration;

use fibcache_core::{
    async_trait, register_backend, Cache, Config, Registry, RegistryErrorKind, Result,
};

struct Impostor;

#[async_trait]
impl Cache for Impostor {
    async fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(Some("0".to_owned()))
    }
    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Impostor> {
    Ok(Impostor)
}

register_backend! {
    name: "nop",
    summary: "a second backend claiming the name nop",
    factory: create,
}

#[test]
fn a_duplicate_name_is_an_error_naming_both_origins() {
    let err = Registry::new().unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Duplicate, "{err:?}");
    assert_eq!(err.name(), "nop");
    assert_eq!(
        err.origins(),
        Some(("static:fibcache", "static:fibcache-core"))
    );
    assert!(err.to_string().contains("registered twice"), "{err}");
}
