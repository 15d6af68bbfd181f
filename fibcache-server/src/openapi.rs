//! The OpenAPI 3.1 document of the HTTP API, as `GET /openapi.json` serves it.
//!
//! The document is written by hand, in `fibcache-server/openapi.json`, and compiled into the
//! binary. What it says about one instance is filled in when an [`App`](crate::App) is
//! created: the largest `n` is that app's `--max-n`, so that a client (or a fuzzer) that keeps
//! to the document is never refused for range, and `info.version` is this build's.
//!
//! `n` is described by two alternatives, because the router accepts more spellings than an
//! integer schema allows (`05`, `-0`): an integer with a `maximum`, and a string with a
//! `pattern` that spells out exactly the other accepted values up to the same maximum. Without
//! the second, a fuzzer that sends the string `05` as "not an integer" expects a refusal and
//! gets fib(5). The router's leading `+` is not among them: a client that follows the document
//! percent-encodes the value `+5` as `%2B5`, which the router does not decode and refuses (a
//! literal `+` in the path, as a person types it, is accepted).

use bytes::Bytes;

/// The document as written.
const DOCUMENT: &str = include_str!("../openapi.json");

/// Where the largest `n` accepted sits in the document.
const MAX_N: &str = "/components/parameters/n/schema/anyOf/0/maximum";

/// Where the pattern of the other spellings of `n` sits in the document.
const PATTERN: &str = "/components/parameters/n/schema/anyOf/1/pattern";

/// The document of an app that accepts `n` up to `max_n`, mounted at `mount` (empty: at the
/// root), serialized. A mounted app's document has a `servers` entry with the prefix, so that
/// its paths resolve where the app actually answers.
///
/// # Panics
/// Never with the document this crate ships: its tests parse it and find [`MAX_N`] and
/// [`PATTERN`] in it.
pub(crate) fn document(max_n: u64, mount: &str) -> Bytes {
    let mut document: serde_json::Value =
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
    let mut set = |pointer: &str, value: serde_json::Value| {
        *document
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("openapi.json has {pointer}")) = value;
    };
    set(MAX_N, max_n.into());
    set(PATTERN, spellings(max_n).into());
    set("/info/version", env!("CARGO_PKG_VERSION").into());
    if !mount.is_empty() {
        document["servers"] = serde_json::json!([{ "url": mount }]);
    }
    Bytes::from(serde_json::to_vec(&document).expect("a JSON value serializes"))
}

/// A regular expression for every value of `n` that the router accepts for `0..=max_n` once a
/// client has percent-encoded it into the path: leading zeros and the number, or `-` and zeros.
/// It means the same in the ECMA-262 dialect of JSON Schema and in Rust's `regex`.
fn spellings(max_n: u64) -> String {
    format!("^(?:0*(?:{})|-0+)$", up_to(max_n))
}

/// The alternatives that match the decimal numbers from 0 to `max` written without leading
/// zeros: every number shorter than `max`, then, digit by digit, those of its length below it,
/// then `max` itself (92: `[0-9]|[1-8][0-9]|9[0-1]|92`).
fn up_to(max: u64) -> String {
    let digits = max.to_string();
    let len = digits.len();
    let any = |count: usize| "[0-9]".repeat(count);
    let mut alternatives: Vec<String> = (1..len)
        .map(|shorter| match shorter {
            1 => any(1),
            _ => format!("[1-9]{}", any(shorter - 1)),
        })
        .collect();
    for (i, digit) in digits.bytes().enumerate() {
        // A number of several digits does not begin with 0.
        let lowest = if i == 0 && len > 1 { b'1' } else { b'0' };
        if digit > lowest {
            let below = match digit - 1 {
                top if top == lowest => (top as char).to_string(),
                top => format!("[{}-{}]", lowest as char, top as char),
            };
            alternatives.push(format!("{}{below}{}", &digits[..i], any(len - i - 1)));
        }
    }
    alternatives.push(digits);
    alternatives.join("|")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use http_body_util::{BodyExt, Empty};
    use hyper::{Method, Request};
    use serde_json::Value;

    use super::*;
    use crate::app::{fixed_paths, FIB_PREFIX};
    use crate::fib;
    use crate::{App, Settings};

    fn parsed(max_n: u64) -> Value {
        serde_json::from_slice(&document(max_n, "")).unwrap()
    }

    #[test]
    fn the_document_is_openapi_3_1_with_this_instance_filled_in() {
        let document = parsed(30);
        let version = document["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "{version}");
        assert_eq!(document.pointer(MAX_N), Some(&Value::from(30)));
        assert_eq!(document.pointer(PATTERN), Some(&Value::from(spellings(30))));
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        // The file holds the default, so that read alone it describes `fibcache` as shipped.
        let file: Value = serde_json::from_str(DOCUMENT).unwrap();
        let default = Settings::default().max_n();
        assert_eq!(file.pointer(MAX_N), Some(&Value::from(default)));
        assert_eq!(
            file.pointer(PATTERN),
            Some(&Value::from(spellings(default)))
        );
    }

    #[test]
    fn ranges_are_written_digit_by_digit() {
        assert_eq!(up_to(0), "0");
        assert_eq!(up_to(1), "0|1");
        assert_eq!(up_to(7), "[0-6]|7");
        assert_eq!(up_to(10), "[0-9]|10");
        assert_eq!(up_to(20), "[0-9]|1[0-9]|20");
        assert_eq!(up_to(92), "[0-9]|[1-8][0-9]|9[0-1]|92");
        assert_eq!(up_to(105), "[0-9]|[1-9][0-9]|10[0-4]|105");
    }

    /// `value` as a client following the document puts it in the path: every byte but the
    /// unreserved ones of RFC 3986 percent-encoded (OpenAPI's `simple` style, RFC 6570's `{n}`).
    fn in_path(value: &str) -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// The document's `n` admits exactly what the router accepts: for every `max_n`, a string
    /// matches the pattern exactly when the router, given it as a client sends it, answers it.
    #[test]
    fn the_schema_of_n_says_exactly_which_values_the_router_accepts() {
        use crate::app::parse_n;
        let mut candidates = vec![String::new(), "+".into(), "-".into(), "+-0".into()];
        for n in 0..=120u64 {
            for sign in ["", "+", "-"] {
                for zeros in ["", "0", "00"] {
                    candidates.push(format!("{sign}{zeros}{n}"));
                }
            }
            candidates.extend([format!("{n}.0"), format!(" {n}"), format!("{n}\n")]);
        }
        for max_n in 0..=fib::MAX_N {
            let document = parsed(max_n);
            let pattern = document.pointer(PATTERN).unwrap().as_str().unwrap();
            let pattern = regex::Regex::new(pattern).unwrap();
            for spelling in &candidates {
                assert_eq!(
                    pattern.is_match(spelling),
                    parse_n(&in_path(spelling), max_n).is_ok(),
                    "max_n {max_n}: {spelling:?}"
                );
            }
        }
    }

    /// The paths of the document, each with the methods it documents.
    fn documented() -> Vec<(String, Vec<Method>)> {
        // The keys of a path item that name an operation; the others are `summary`,
        // `parameters` and the like.
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let document = parsed(92);
        let paths = document["paths"].as_object().unwrap();
        paths
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .map(|key| Method::from_bytes(key.to_uppercase().as_bytes()).unwrap())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    #[test]
    fn the_document_lists_exactly_the_paths_the_router_answers() {
        let documented: BTreeSet<String> = documented().into_iter().map(|(p, _)| p).collect();
        let routed: BTreeSet<String> = fixed_paths()
            .map(str::to_owned)
            .chain([format!("{FIB_PREFIX}{{n}}")])
            .collect();
        assert_eq!(documented, routed);
    }

    /// Every documented operation is answered by its route (with `n = 0`): `200`, a status the
    /// document gives it, rather than `404` (no such path) or `405` (no such method). Every path
    /// documents `GET` and `HEAD`, the methods the router answers on each of its paths.
    #[tokio::test]
    async fn the_router_answers_every_documented_operation() {
        let app = App::new(
            Arc::new(fibcache_core::nop::NopCache),
            "nop",
            Settings::default(),
        );
        let document = parsed(92);
        for (path, methods) in documented() {
            assert_eq!(methods, [Method::GET, Method::HEAD], "{path}");
            for method in methods {
                let uri = path.replace("{n}", "0");
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = app.handle(request).await;
                let status = response.status();
                assert_eq!(status, 200, "{method} {uri}");
                let operation = &document["paths"][&path][method.as_str().to_lowercase()];
                assert!(
                    operation["responses"].get(status.as_str()).is_some(),
                    "{method} {path}: {status} is not documented"
                );
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.is_empty(), method == Method::HEAD, "{method} {uri}");
            }
        }
    }

    #[tokio::test]
    async fn the_app_serves_its_own_document() {
        let settings = Settings::builder().max_n(17).build().unwrap();
        let app = App::new(Arc::new(fibcache_core::nop::NopCache), "nop", settings);
        let request = Request::get("/openapi.json")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = app.handle(request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, document(17, ""));
    }
}
