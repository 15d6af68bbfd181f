//! HTTP/2 from the client side: raw frames over a TCP socket, for tests that must control every
//! byte a client sends (a preface and then nothing, a handshake and no stream), and the `h2`
//! crate's client for ordinary requests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What every HTTP/2 connection starts with (prior knowledge, h2c).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const ACK: u8 = 0x1;

/// One frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// The bytes of a frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = len.to_be_bytes()[1..].to_vec();
    bytes.extend([kind, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// The next frame, or `None` once the server has closed the connection.
pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 9];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }))
}

/// A client that completes the HTTP/2 handshake, acknowledges the server's settings, answers
/// every PING, and opens no stream.
pub struct IdleClient(TcpStream);

impl IdleClient {
    /// Connects and sends the preface and its settings.
    pub async fn connect(addr: SocketAddr) -> IdleClient {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.expect("send the preface");
        IdleClient(stream)
    }

    /// Talks until the server closes the connection: the frames it sent, or `None` if it was
    /// still open after `limit`.
    pub async fn until_closed(mut self, limit: Duration) -> Option<Vec<Frame>> {
        let stream = &mut self.0;
        let talk = async {
            let mut seen = Vec::new();
            while let Some(frame) = read_frame(stream).await.ok().flatten() {
                let answer = match frame.kind {
                    SETTINGS if frame.flags & ACK == 0 => Some(self::frame(SETTINGS, ACK, 0, &[])),
                    PING if frame.flags & ACK == 0 => {
                        Some(self::frame(PING, ACK, 0, &frame.payload))
                    }
                    _ => None,
                };
                if let Some(answer) = answer {
                    // The server may close between its frame and our answer.
                    let _ = stream.write_all(&answer).await;
                }
                seen.push(frame);
            }
            seen
        };
        tokio::time::timeout(limit, talk).await.ok()
    }
}

/// A response over HTTP/2: its status, headers, whether the server ended the stream with the
/// headers (no body at all), and the body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub ended_with_headers: bool,
    pub body: Vec<u8>,
}

/// `method path` over a fresh HTTP/2 connection (prior knowledge), with the `h2` crate.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(())
        .expect("a request");
    let (response, _) = client
        .send_request(request, true)
        .expect("send the request");
    let response = tokio::time::timeout(Duration::from_secs(60), response)
        .await
        .expect("an answer within 60 s")
        .expect("an HTTP/2 answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let ended_with_headers = body.is_end_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("a body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Answer {
        status,
        headers,
        ended_with_headers,
        body: bytes,
    }
}
