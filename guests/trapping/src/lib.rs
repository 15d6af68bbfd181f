//! A hostile guest: a working map, except that any call on a key containing `13` traps. The
//! host must count the trap as a miss and serve the next call from a fresh instance.

use std::cell::RefCell;
use std::collections::HashMap;

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

thread_local! {
    static MAP: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

fn check(key: &str) {
    if key.contains("13") {
        panic!("trapping guest: key {key}");
    }
}

struct Trapping;

impl Guest for Trapping {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "trapping".to_owned(),
            summary: "traps on keys containing 13 (hostile test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Ok(())
    }

    fn get(key: String) -> Result<Option<String>, String> {
        check(&key);
        Ok(MAP.with(|map| map.borrow().get(&key).cloned()))
    }

    fn set(key: String, value: String, _ttl_ms: u64) -> Result<(), String> {
        check(&key);
        MAP.with(|map| map.borrow_mut().insert(key, value));
        Ok(())
    }
}

export!(Trapping);
