//! The responses of the app: the JSON result of the hit path, JSON errors, and `HEAD`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::Body;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// `{"result":<value>}` with its `x-cache` header; written without the formatting machinery,
/// as this is the hit path.
pub(super) fn result(value: u64, cache: &'static str) -> Response<Body> {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    let mut body = Vec::with_capacity(11 + digits.len());
    body.extend_from_slice(b"{\"result\":");
    body.extend_from_slice(digits);
    body.push(b'}');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(cache));
    resp
}

/// The answer to `HEAD`: the headers `GET` gets, `Content-Length` included, and no body.
/// hyper leaves the body of a `HEAD` answer out by itself over HTTP/1.1, but not over HTTP/2,
/// where a body after a `HEAD` answer is a protocol error.
pub(super) fn without_body(response: &mut Response<Body>) {
    let len = http_body::Body::size_hint(response.body()).exact();
    *response.body_mut() = Body::default();
    if let Some(len) = len {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// A 503 that tells the client when to come back.
pub(super) fn unavailable(message: &str) -> Response<Body> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

pub(super) fn not_allowed() -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed; use GET",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// A JSON error response `{"error": message}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

pub(super) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn result_bodies_are_the_documented_json() {
        for value in [0u64, 7, 55, 832_040, 7_540_113_804_746_346_429, u64::MAX] {
            let body = result(value, "hit").into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), format!("{{\"result\":{value}}}"));
        }
    }
}
