//! Clients that are slow on purpose, idle, or send too much cannot starve the service: while
//! they hold connections, `/healthz` answers and a real delivery is stored; then the
//! listener's timeouts end them (src/server/listen.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass::clock::{Clock, SystemClock};
use breakglass::server::listen::{HEADER_READ_TIMEOUT, REQUEST_TIMEOUT};
use breakglass::service::standalone::{REPO, SECRET, Standalone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); what it said.
async fn answer(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn ping_delivery() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "zen": "Keep it logically awesome.",
        "hook_id": 1,
        "repository": {"full_name": REPO},
        "sender": {"id": 1, "login": "alice", "type": "User"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_oversized_clients_do_not_starve_the_service() {
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let w = Standalone::start(None, clock, Duration::from_millis(50)).await;
    let addr = w.addr();

    // A body that trickles in, a byte at a time.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..24 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow_body.write_all(b" ").await.is_err() {
                break;
            }
        }
        slow_body
    });
    // Headers that never end.
    let mut slow_headers = TcpStream::connect(addr).await.unwrap();
    slow_headers
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        .await
        .unwrap();
    // A client that opens HTTP/2 (the preface and an empty SETTINGS frame), then says nothing:
    // HTTP/2 has no header timeout, so such connections would be held for ever. The forges
    // deliver over HTTP/1.1, and so the listener speaks nothing else.
    let mut h2_idle = TcpStream::connect(addr).await.unwrap();
    h2_idle
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Connections that say nothing at all.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }

    // Meanwhile the service serves.
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ping = |content_type: &'static str, delivery: &'static str, body: Vec<u8>| {
        client
            .post(format!("http://{addr}/webhooks/github"))
            .header("content-type", content_type)
            .header("x-github-event", "ping")
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                breakglass_test_forge::sign_webhook(SECRET, &body),
            )
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
    };
    let stored = ping("application/json", "robust-1", ping_delivery())
        .await
        .unwrap();
    assert!(stored.status().is_success(), "{}", stored.status());
    // A webhook set to send form-encoded payloads is refused with the setting to change.
    let form = b"payload=%7B%7D".to_vec();
    let refused = ping("application/x-www-form-urlencoded", "robust-2", form)
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    let said = refused.text().await.unwrap();
    assert!(
        said.contains("set the webhook's content type to application/json"),
        "{said}"
    );
    // So is a JSON body sent as text, signed as it is: what it is, the header says.
    let as_text = ping("text/plain", "robust-3", ping_delivery())
        .await
        .unwrap();
    assert_eq!(as_text.status(), 415);

    // A head larger than the listener reads is refused outright.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 100 * 1024));
    head.extend_from_slice(b"\r\n\r\n");
    let _ = huge.write_all(&head).await;
    let said = answer(&mut huge, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(said.starts_with("HTTP/1.1 431"), "{said:?}");

    // Then the timeouts end the slow and the idle.
    let grace = HEADER_READ_TIMEOUT.max(REQUEST_TIMEOUT) + Duration::from_secs(5);
    let mut slow_body = trickle.await.unwrap();
    let said = answer(&mut slow_body, grace)
        .await
        .expect("the slow body is cut off");
    assert!(said.starts_with("HTTP/1.1 408"), "{said:?}");
    let said = answer(&mut slow_headers, grace)
        .await
        .expect("unfinished headers are cut off");
    assert!(!said.starts_with("HTTP/1.1 200"), "{said:?}");
    let said = answer(&mut h2_idle, Duration::from_secs(5))
        .await
        .expect("an HTTP/2 connection is not served");
    assert!(!said.contains("HTTP/2"), "{said:?}");
    for stream in &mut idle {
        assert!(
            answer(stream, grace).await.is_some(),
            "an idle connection is closed"
        );
    }
    w.running.shutdown().await;
}
