//! A guest of the right world that names no backend: the host must refuse the file.

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct NoBackends;

impl Guest for NoBackends {
    fn backends() -> Vec<Info> {
        Vec::new()
    }

    fn open(name: String, _config: Config) -> Result<(), String> {
        Err(format!("no backend `{name}` here"))
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(NoBackends);
