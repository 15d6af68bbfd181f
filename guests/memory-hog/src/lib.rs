//! A hostile guest: `get` allocates 1 MiB blocks until the allocator fails. The host's memory
//! cap (`--wasm-max-memory`) must turn that into a trap, and the trap into a miss.

wit_bindgen::generate!({ path: "../../wit", world: "cache" });

use exports::fibcache::cache::backend::{Config, Guest, Info};

struct MemoryHog;

impl Guest for MemoryHog {
    fn backends() -> Vec<Info> {
        vec![Info {
            name: "memory-hog".to_owned(),
            summary: "get grows memory without end (hostile test guest)".to_owned(),
        }]
    }

    fn open(_name: String, _config: Config) -> Result<(), String> {
        Ok(())
    }

    fn get(_key: String) -> Result<Option<String>, String> {
        let mut blocks = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }

    fn set(_key: String, _value: String, _ttl_ms: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(MemoryHog);
