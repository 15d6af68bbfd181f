//! A guest built for `fibcache:cache@1.0.0` (its own copy of the WIT, `wit/cache.wit`), a
//! major version the host does not speak: the host must refuse it naming both versions.

wit_bindgen::generate!({ path: "wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct OtherVersion;

impl Guest for OtherVersion {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "other-version".to_owned(),
            summary: "built for fibcache:cache@1.0.0 (test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Ok(())
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(OtherVersion);
