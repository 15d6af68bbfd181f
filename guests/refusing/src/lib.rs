//! A bad new version of `memcache`: it lists the same backend with the same optional
//! capabilities, but its `open` refuses. A reload must leave the old version serving rather
//! than swap this one in.

wit_bindgen::generate!({ path: "../../wit", world: "cache-full" });

use exports::fibcache::cache::backend::{Config, Guest as Backend, Info};
use exports::fibcache::cache::claims::Guest as Claims;
use exports::fibcache::cache::expiry::Guest as Expiry;

struct Refusing;

impl Backend for Refusing {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "memcache".to_owned(),
            summary: "a version of memcache that refuses to open (test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Err("this version refuses to open".to_owned())
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

impl Expiry for Refusing {
    fn remaining(_key: String) -> Result<Option<u64>, String> {
        Ok(None)
    }
}

impl Claims for Refusing {
    fn claim(_key: String, _token: String, _ttl_ms: u64) -> Result<bool, String> {
        Ok(false)
    }

    fn renew(_key: String, _token: String, _ttl_ms: u64) -> Result<bool, String> {
        Ok(false)
    }

    fn release(_key: String, _token: String) -> Result<bool, String> {
        Ok(false)
    }
}

export!(Refusing);
