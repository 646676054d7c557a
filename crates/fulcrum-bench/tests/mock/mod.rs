//! A tiny OpenAI-compatible server for tests: `GET /v1/models` and streaming
//! `POST /v1/completions` with canned chunks at set delays.
//!
//! It is written on raw TCP rather than a web framework so the byte stream is
//! under the test's control: every SSE event is written in two pieces with a
//! pause between them (the split point moves from event to event, and falls
//! inside JSON, inside `data:`, between `\r` and `\n`), odd requests use
//! `\r\n` line endings, and chunks carry one to three tokens, so the client
//! must reassemble events and must count tokens from `usage`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const MODEL: &str = "mock-model";

#[derive(Clone, Debug)]
pub struct Behaviour {
    pub first_token_delay: Duration,
    pub token_delay: Duration,
    /// Every `fail_every`-th completion (1-based) answers HTTP 500; 0 never.
    pub fail_every: usize,
    /// Require `Authorization: Bearer <key>`.
    pub api_key: Option<&'static str>,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            first_token_delay: Duration::from_millis(20),
            token_delay: Duration::from_millis(3),
            fail_every: 0,
            api_key: None,
        }
    }
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    pub num_completions: AtomicUsize,
    pub num_failed: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    in_flight: AtomicUsize,
    pub bodies: Mutex<Vec<Value>>,
}

/// Starts the server on an ephemeral loopback port; returns its base URL.
pub async fn start(behaviour: Behaviour) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (behaviour, seen) = (behaviour.clone(), state.clone());
            tokio::spawn(async move {
                let _ = serve_connection(socket, &behaviour, &seen).await;
            });
        }
    });
    (url, seen)
}

/// Reads one request: head and `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

async fn respond(socket: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}

fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "mock_error", "param": null, "code": null}})
}

async fn serve_connection(
    mut socket: TcpStream,
    behaviour: &Behaviour,
    seen: &Seen,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let Some((head, body)) = read_request(&mut socket).await? else {
        return Ok(());
    };
    if let Some(key) = behaviour.api_key {
        let authorized = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| {
                k.eq_ignore_ascii_case("authorization") && v.trim() == format!("Bearer {key}")
            });
        if !authorized {
            return respond(
                &mut socket,
                "401 Unauthorized",
                &error_body("missing or wrong API key"),
            )
            .await;
        }
    }
    let request_line = head.lines().next().unwrap_or_default().to_string();
    if request_line.starts_with("GET /v1/models ") {
        return respond(
            &mut socket,
            "200 OK",
            &json!({"object": "list", "data": [{"id": MODEL, "object": "model"}]}),
        )
        .await;
    }
    if !request_line.starts_with("POST /v1/completions ") {
        return respond(&mut socket, "404 Not Found", &error_body("no such route")).await;
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    seen.bodies.lock().unwrap().push(body.clone());
    let number = seen.num_completions.fetch_add(1, Ordering::SeqCst) + 1;
    if number.checked_rem(behaviour.fail_every) == Some(0) {
        seen.num_failed.fetch_add(1, Ordering::SeqCst);
        return respond(
            &mut socket,
            "500 Internal Server Error",
            &error_body("injected failure"),
        )
        .await;
    }
    let in_flight = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    let result = stream_completion(&mut socket, behaviour, &body, number).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn stream_completion(
    socket: &mut TcpStream,
    behaviour: &Behaviour,
    body: &Value,
    number: usize,
) -> std::io::Result<()> {
    let prompt_tokens = match &body["prompt"] {
        Value::Array(ids) => ids.len(),
        Value::String(text) => text.split_whitespace().count(),
        other => panic!("unexpected prompt {other}"),
    };
    let max_tokens = body["max_tokens"].as_u64().unwrap() as usize;
    let newline = if number % 2 == 1 { "\r\n" } else { "\n" };
    let head = concat!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n",
        "cache-control: no-cache\r\nconnection: close\r\n\r\n",
    );
    socket.write_all(head.as_bytes()).await?;
    let mut events = vec![": keep-alive".to_string()];
    let mut delays = vec![Duration::ZERO];
    let mut sent = 0;
    while sent < max_tokens {
        let n = (1 + (sent + number) % 3).min(max_tokens - sent);
        let text: String = (sent..sent + n).map(|i| format!(" t{i}")).collect();
        let choice = json!({"index": 0, "text": text, "finish_reason": null});
        events.push(format!(
            "data: {}",
            json!({"id": format!("cmpl-{number}"), "choices": [choice]})
        ));
        delays.push(if sent == 0 {
            behaviour.first_token_delay
        } else {
            behaviour.token_delay * n as u32
        });
        sent += n;
    }
    let total_tokens = prompt_tokens + max_tokens;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens, "total_tokens": total_tokens});
    events.push(format!(
        "data: {}",
        json!({"id": format!("cmpl-{number}"), "choices": [], "usage": usage})
    ));
    delays.push(Duration::ZERO);
    events.push("data: [DONE]".to_string());
    delays.push(Duration::ZERO);
    for (k, (event, delay)) in events.iter().zip(delays).enumerate() {
        tokio::time::sleep(delay).await;
        let bytes = format!("{event}{newline}{newline}").into_bytes();
        // Split somewhere new each time, including between `\r` and `\n`.
        let cut = 1 + (k * 7 + number) % (bytes.len() - 1);
        socket.write_all(&bytes[..cut]).await?;
        socket.flush().await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        socket.write_all(&bytes[cut..]).await?;
        socket.flush().await?;
    }
    socket.shutdown().await
}
