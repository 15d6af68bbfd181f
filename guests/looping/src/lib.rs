//! A hostile guest: `get` spins forever. The host must stop it at `--cache-timeout` and keep
//! serving everything else.

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct Looping;

impl Guest for Looping {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "looping".to_owned(),
            summary: "get never returns (hostile test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Ok(())
    }

    fn get(key: String) -> Result<Option<String>, String> {
        let mut n = key.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(Looping);
