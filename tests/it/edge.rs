//! The edge's checks and refusals: allowed origins (tungstenite and
//! Chromium over `wss://`), the loopback `Host` of a keyless API, the PROXY
//! protocol and trusted proxies, and HTTP refusals every client can read
//! (413 to Python and Node clients that send the whole body first, 413
//! instead of `100 Continue`, 431 with a JSON body).

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Write `prefix` (a PROXY header, or nothing) and a WebSocket upgrade with
/// `headers`; Ok(the socket and the welcome) or Err((status, body)).
/// `Err((0, Null))` when the server closed without an answer.
async fn upgrade(
    addr: SocketAddr,
    prefix: &[u8],
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(TcpStream, Value), (u16, Value)> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "GET /ws?{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(prefix).await;
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut rest = buf[end + 4..].to_vec();
            if status != 101 {
                let _ = tokio::time::timeout(RECV_TIMEOUT, s.read_to_end(&mut rest)).await;
                return Err((status, serde_json::from_slice(&rest).unwrap_or(Value::Null)));
            }
            // The welcome: a text frame of 7- or 16-bit length.
            let frame = |b: &[u8]| match b.get(1).map(|l| l & 0x7F) {
                Some(126) if b.len() >= 4 => {
                    Some((4, usize::from(u16::from_be_bytes([b[2], b[3]]))))
                }
                Some(n) if n < 126 => Some((2, usize::from(n))),
                _ => None,
            };
            while frame(&rest).is_none_or(|(h, n)| rest.len() < h + n) {
                let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut chunk))
                    .await
                    .expect("welcome timeout")
                    .expect("read");
                assert!(n > 0, "closed before welcome");
                rest.extend_from_slice(&chunk[..n]);
            }
            let (h, n) = frame(&rest).expect("frame");
            let welcome = serde_json::from_slice(&rest[h..h + n]).expect("welcome JSON");
            return Ok((s, welcome));
        }
        let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut chunk))
            .await
            .expect("answer timeout")
            .unwrap_or(0);
        if n == 0 {
            return Err((0, Value::Null));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET /api/connections/{conn}` from loopback.
async fn details(addr: SocketAddr, conn: &Value) -> Value {
    let (status, body) = http(addr, "GET", &format!("/api/connections/{conn}"), &[], None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_origin_outside_the_list_is_refused_naming_it() {
    let broker = TestBroker::new()
        .with(|c| {
            c.server.allowed_origins = vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
            ]
        })
        .start();
    let (status, body) = upgrade(
        broker.addr,
        b"",
        "user=a",
        &[("Origin", "https://evil.example.net")],
    )
    .await
    .expect_err("refused");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    assert_says(
        &body["error"],
        "\"https://evil.example.net\" is not in server.allowed_origins",
    );
    for origin in ["https://app.example.com", "https://chat.example.org"] {
        upgrade(broker.addr, b"", "user=a", &[("Origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e:?}"));
    }
    // Clients that are not browsers send no Origin: not affected.
    upgrade(broker.addr, b"", "user=a", &[])
        .await
        .expect("no origin");
    // Without a list, any origin passes (as before).
    let open = TestBroker::new().start();
    upgrade(
        open.addr,
        b"",
        "user=a",
        &[("Origin", "https://evil.example.net")],
    )
    .await
    .expect("no check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium not found on PATH (apt-get install chromium, or set SHARDCAST_CHROMIUM)"
)]
async fn chromium_opens_wss_from_an_allowed_origin_only() {
    use crate::tls::{TestCa, spki_pin};
    let browser = crate::browser::chromium();
    let ca = TestCa::new("chromium");
    let (cert, key, spki) = ca.write_leaf(5);
    // The page's server: its port is in the allowed origin.
    let pages = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let page_port = pages.local_addr().expect("addr").port();
    let broker = TestBroker::new()
        .with(|c| {
            c.server.tls_cert_file = Some(cert.display().to_string());
            c.server.tls_key_file = Some(key.display().to_string());
            c.server.allowed_origins = vec![format!("http://127.0.0.1:{page_port}")];
        })
        .start();
    // The page reports its outcome to its own server (`/report?...`).
    let page = format!(
        r#"<html><body><script>
const report = (what) => fetch('/report?' + what);
let done = false;
const ws = new WebSocket('wss://127.0.0.1:{}/ws?user=browser');
ws.onmessage = (e) => {{ if (!done) {{ done = true; report('got:' + JSON.parse(e.data).type); }} }};
ws.onclose = (e) => {{ if (!done) {{ done = true; report('closed:' + e.code); }} }};
</script></body></html>"#,
        broker.addr.port()
    );
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = pages.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            if let Some(what) = path.strip_prefix("/report?") {
                let _ = reports_tx.send(what.to_string());
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let flags = vec![format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_pin(&spki)
    )];
    for (url, expected) in [
        (format!("http://127.0.0.1:{page_port}/"), "got:welcome"),
        (format!("http://localhost:{page_port}/"), "closed:1006"),
    ] {
        let shown = crate::browser::Headless::open(&browser, &url, &flags);
        let report = tokio::time::timeout(std::time::Duration::from_secs(60), reports.recv())
            .await
            .expect("the page reports within 60 s")
            .expect("page server");
        drop(shown);
        assert_eq!(report, expected, "page {url}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_api_answers_loopback_hosts_only() {
    let broker = TestBroker::new().start();
    for path in ["/api/stats", "/metrics", "/"] {
        for host in ["attacker.example", "attacker.example:8080", "127.0.0.2"] {
            let (status, body) = http(broker.addr, "GET", path, &[("Host", host)], None).await;
            assert_eq!(status, 403, "{path} Host {host}: {body}");
            assert_eq!(body["error"]["code"], "forbidden");
            assert_says(&body["error"], &format!("not Host \"{host}\""));
        }
        for host in ["localhost", "127.0.0.1", "[::1]:9"] {
            let (status, _) = http(broker.addr, "GET", path, &[("Host", host)], None).await;
            assert_eq!(status, 200, "{path} Host {host}");
        }
    }
    // Health checks are for load balancers: any Host.
    let (status, _) = http(
        broker.addr,
        "GET",
        "/healthz",
        &[("Host", "lb.internal")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    // With a key, the key decides, whatever the Host.
    let keyed = TestBroker::new()
        .with(|c| c.api.keys = vec!["0123456789abcdef-key".into()])
        .start();
    let auth = ("Authorization", "Bearer 0123456789abcdef-key");
    let (status, _) = http(
        keyed.addr,
        "GET",
        "/api/stats",
        &[("Host", "api.example.com"), auth],
        None,
    )
    .await;
    assert_eq!(status, 200);
}

/// A PROXY protocol v2 header naming `src` as the client.
fn proxy_v2(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

fn proxied(policy: &str, trusted: &str) -> Running {
    let (policy, trusted) = (policy.to_string(), trusted.to_string());
    TestBroker::new()
        .with(move |c| {
            c.server.proxy_protocol = toml::Value::String(policy).try_into().expect("policy");
            c.server.trusted_proxies = vec![trusted];
            c.limits.max_connections_per_ip = 1;
        })
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_names_the_client_for_caps_and_details() {
    let broker = proxied("any", "127.0.0.1/32");
    let (_a, welcome) = upgrade(
        broker.addr,
        &proxy_v2([203, 0, 113, 9], 5555),
        "user=a",
        &[],
    )
    .await
    .expect("v2");
    assert_eq!(
        details(broker.addr, &welcome["conn"]).await["addr"],
        "203.0.113.9"
    );
    // The per-IP cap (1) counts the client, not the balancer.
    let (status, body) = upgrade(
        broker.addr,
        &proxy_v2([203, 0, 113, 9], 6666),
        "user=b",
        &[],
    )
    .await
    .expect_err("cap");
    assert_eq!(status, 429, "{body}");
    assert_says(&body["error"], "203.0.113.9");
    let v1 = b"PROXY TCP4 198.51.100.4 127.0.0.1 4000 443\r\n";
    let (_c, welcome) = upgrade(broker.addr, v1, "user=c", &[]).await.expect("v1");
    assert_eq!(
        details(broker.addr, &welcome["conn"]).await["addr"],
        "198.51.100.4"
    );
    // A trusted peer without a header is a direct client.
    let (_d, welcome) = upgrade(broker.addr, b"", "user=d", &[])
        .await
        .expect("direct");
    assert_eq!(
        details(broker.addr, &welcome["conn"]).await["addr"],
        "127.0.0.1"
    );
    // A malformed header closes the connection before anything else is read.
    let mut bad = proxy_v2([203, 0, 113, 10], 1);
    bad[12] = 0x31; // version 3
    assert_eq!(
        upgrade(broker.addr, &bad, "user=e", &[]).await.err(),
        Some((0, Value::Null))
    );
    let body = http_get(broker.addr, "/metrics HTTP/1.1").await.1;
    assert!(
        body.lines()
            .any(|l| l.starts_with("shardcast_proxy_header_refusals_total") && !l.ends_with(" 0")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_from_untrusted_peers_or_other_versions_close_the_connection() {
    let untrusted = proxied("v2", "10.0.0.0/8");
    let refused = upgrade(
        untrusted.addr,
        &proxy_v2([203, 0, 113, 9], 5555),
        "user=a",
        &[],
    )
    .await;
    assert_eq!(refused.err(), Some((0, Value::Null)), "untrusted peer");
    // Direct clients of an untrusted peer are served as themselves.
    upgrade(untrusted.addr, b"", "user=a", &[])
        .await
        .expect("direct");
    let v2_only = proxied("v2", "127.0.0.1/32");
    let v1 = b"PROXY TCP4 198.51.100.4 127.0.0.1 4000 443\r\n";
    assert_eq!(
        upgrade(v2_only.addr, v1, "user=a", &[]).await.err(),
        Some((0, Value::Null))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let broker = TestBroker::new()
        .with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()])
        .start();
    let xff = ("X-Forwarded-For", "6.6.6.6, 198.51.100.7");
    let (_a, welcome) = upgrade(broker.addr, b"", "user=a", &[xff])
        .await
        .expect("upgrade");
    assert_eq!(
        details(broker.addr, &welcome["conn"]).await["addr"],
        "198.51.100.7"
    );
    // A keyless API relayed by a proxy on this machine is not a loopback
    // client.
    let (status, body) = http(broker.addr, "GET", "/api/stats", &[xff], None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
}

/// A body of `n` bytes of JSON for /api/publish.
const BIG_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Run `program` (`python3 -c` or `node -e`) with `script` POSTing a body of
/// `size` bytes of JSON to /api/publish; its one line of output.
async fn post_big_body(program: &'static str, script: &'static str) -> String {
    let broker = TestBroker::new().start();
    let url = format!("http://{}/api/publish", broker.addr);
    let flag = if program == "node" { "-e" } else { "-c" };
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(program)
            .arg(flag)
            .arg(script)
            .arg(url)
            .arg(BIG_BODY_BYTES.to_string())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr)
    })
    .await
    .expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_python3), ignore = "python3 not found on PATH")]
async fn an_oversize_body_gets_its_413_in_python_urllib() {
    let python = r#"
import json, sys, urllib.request, urllib.error
body = b'{"room":"r","data":"' + b"x" * int(sys.argv[2]) + b'"}'
req = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=20)
    print("no refusal")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["error"]["code"])
"#;
    assert_eq!(
        post_big_body("python3", python).await,
        "413 payload_too_large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_node), ignore = "node not found on PATH")]
async fn an_oversize_body_gets_its_413_in_node_fetch() {
    let node = r#"
const [url, n] = process.argv.slice(1);
const body = '{"room":"r","data":"' + 'x'.repeat(Number(n)) + '"}';
fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  .then(async (r) => console.log(r.status, (await r.json()).error.code))
  .catch((e) => console.log('failed', e.cause ? e.cause.code : e.message));
"#;
    assert_eq!(post_big_body("node", node).await, "413 payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_a_large_length_gets_413_not_100() {
    let broker = TestBroker::new().start();
    let mut s = TcpStream::connect(broker.addr).await.expect("connect");
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {BIG_BODY_BYTES}\r\nExpect: 100-continue\r\n\r\n",
        broker.addr
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("api.max_body_bytes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_head_gets_431_with_a_json_body_and_the_largest_token_fits() {
    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
    let broker = TestBroker::new()
        .with(|c| {
            c.auth.mode = shardcast::config::AuthMode::Jwt;
            c.auth.secret = SECRET.into();
        })
        .start();
    let limit = 64 * 1024;
    let (status, body) = http(
        broker.addr,
        "GET",
        &format!("/ws?token={}", "a".repeat(limit)),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (431, json!("head_too_large")),
        "{body}"
    );
    assert_says(
        &body["error"],
        &format!("limits.max_http_head_bytes ({limit} bytes)"),
    );
    // The largest token the documented claim limits allow: 256 room
    // patterns of 129 bytes, a 256-byte name, a 128-byte sub.
    let rooms: Vec<String> = (0..256)
        .map(|i| format!("{i:03}{}", "r".repeat(126)))
        .collect();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let claims = json!({
        "sub": "u".repeat(128), "name": "n".repeat(256), "rooms": rooms, "exp": exp,
        "perms": ["create", "publish", "send", "presence", "broadcast", "admin", "connect"],
    });
    let token = shardcast::auth::mint_hs256(SECRET.as_bytes(), &claims).expect("mint");
    assert!(token.len() > 45_000, "{}", token.len());
    let (_s, welcome) = upgrade(broker.addr, b"", &format!("token={token}"), &[])
        .await
        .expect("the largest token fits");
    assert_eq!(welcome["user"], "u".repeat(128));
}
