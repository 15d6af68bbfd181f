//! A hostile guest: `open`, its constructor, traps. The host must refuse the backend at
//! start-up with one line.

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct OpenTrap;

impl Guest for OpenTrap {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "open-trap".to_owned(),
            summary: "traps when opened (hostile test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        panic!("open-trap guest: refusing to open")
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(OpenTrap);
