//! A hostile guest: `get` answers every key with a value of 2 MiB. The host must refuse it
//! without copying it out of the guest.

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct Oversized;

impl Guest for Oversized {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "oversized".to_owned(),
            summary: "get returns 2 MiB values (hostile test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Ok(())
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        Ok(Some("7".repeat(2 << 20)))
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(Oversized);
