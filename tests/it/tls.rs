//! TLS at the edge: `wss://` and `https://` with a test CA made here
//! (rcgen), from a rustls client, Python's `ssl` and Chromium; the pair
//! reloaded under live connections; and the startup checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::harness::*;

/// A test CA and the files of one server pair it signed.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    pub(crate) ca_pem: String,
    pub(crate) dir: PathBuf,
}

impl TestCa {
    /// A new CA, and a directory for its files.
    pub(crate) fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("shardcast test CA {name}"));
        let cert = params.self_signed(&key).expect("CA cert");
        let dir = std::env::temp_dir().join(format!(
            "shardcast-tls-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestCa {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            dir,
        }
    }

    /// A leaf for `localhost` and `127.0.0.1` valid from `from` to `to`
    /// (Unix seconds): (certificate PEM, key PEM, SPKI DER).
    pub(crate) fn leaf(&self, serial: u64, from: i64, to: i64) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        params.serial_number = Some(serial.into());
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(to).expect("time");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (
            cert.pem(),
            key.serialize_pem(),
            rcgen::PublicKeyData::subject_public_key_info(&key),
        )
    }

    /// A leaf valid for a year around now, written to `cert.pem`/`key.pem`:
    /// (cert path, key path, SPKI DER).
    pub(crate) fn write_leaf(&self, serial: u64) -> (PathBuf, PathBuf, Vec<u8>) {
        let now = unix_now();
        let (cert, key, spki) = self.leaf(serial, now - 3600, now + 365 * 86_400);
        let (cert_path, key_path) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        write_atomically(&cert_path, &cert);
        write_atomically(&key_path, &key);
        (cert_path, key_path, spki)
    }

    /// A rustls client trusting this CA only.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A rustls server showing a leaf of this CA (for `localhost` and
    /// `127.0.0.1`, valid for a day around now).
    pub(crate) fn acceptor(&self, serial: u64) -> tokio_rustls::TlsAcceptor {
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let now = unix_now();
        let (cert, key, _) = self.leaf(serial, now - 3600, now + 86_400);
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("leaf PEM");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("pair");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// The CA's certificate written to `ca.pem` in its directory.
    pub(crate) fn write_ca(&self) -> PathBuf {
        let path = self.dir.join("ca.pem");
        write_atomically(&path, &self.ca_pem);
        path
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Replace `path` with `text` in one rename, as deploy tools do.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A broker speaking TLS with `cert` and `key`.
pub(crate) fn tls_broker(cert: &Path, key: &Path) -> Running {
    TestBroker::new()
        .with(|c| {
            c.server.tls_cert_file = Some(cert.display().to_string());
            c.server.tls_key_file = Some(key.display().to_string());
        })
        .start()
}

/// A TLS session to `addr` for `localhost`; returns it and the serial of
/// the certificate the server showed.
pub(crate) async fn tls_connect(
    ca: &TestCa,
    addr: SocketAddr,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio::time::timeout(RECV_TIMEOUT, ca.connector().connect(name, tcp))
        .await
        .expect("handshake timeout")
        .expect("TLS handshake");
    let serial = {
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate");
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).expect("x509");
        parsed.raw_serial().to_vec()
    };
    (tls, serial)
}

/// A `wss://` client (tokio-tungstenite over the rustls session) as `user`,
/// its welcome read; and the serial of the server's certificate.
pub(crate) async fn wss_user(ca: &TestCa, addr: SocketAddr, user: &str) -> (TlsClient, Vec<u8>) {
    let (tls, serial) = tls_connect(ca, addr).await;
    let url = format!("wss://localhost:{}/ws?user={user}", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("wss upgrade");
    let mut client = TlsClient { ws };
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, serial)
}

/// A WebSocket client over a rustls session.
pub(crate) struct TlsClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
}

impl TlsClient {
    pub(crate) async fn send(&mut self, v: serde_json::Value) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub(crate) async fn recv(&mut self) -> serde_json::Value {
        use futures_util::StreamExt;
        loop {
            let msg = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("stream ended")
                .expect("websocket error");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return serde_json::from_str(&t).expect("JSON");
            }
        }
    }

    /// The next frame of type `kind`.
    pub(crate) async fn recv_type(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// One HTTP/1.1 request over TLS: (status, body text).
async fn https(ca: &TestCa, addr: SocketAddr, path: &str) -> (u16, String) {
    let (mut tls, _) = tls_connect(ca, addr).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_from_a_rustls_client_with_a_test_ca() {
    let ca = TestCa::new("rustls");
    let (cert, key, _) = ca.write_leaf(1);
    let broker = tls_broker(&cert, &key);
    assert!(broker.broker().is_tls());
    let (mut a, serial) = wss_user(&ca, broker.addr, "alice").await;
    assert_eq!(serial, vec![1]);
    let (mut b, _) = wss_user(&ca, broker.addr, "bob").await;
    a.send(json!({"type":"join","room":"secure","id":1})).await;
    a.recv_type("ack").await;
    b.send(json!({"type":"join","room":"secure","id":1})).await;
    b.recv_type("ack").await;
    // A message large enough to span TLS records, both ways.
    let big = "x".repeat(40_000);
    a.send(json!({"type":"publish","room":"secure","data":{"text":big}}))
        .await;
    let got = b.recv_type("message").await;
    assert_eq!(got["data"]["text"].as_str().map(str::len), Some(40_000));
    let (status, body) = https(&ca, broker.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // Plain HTTP to a TLS listener is not served.
    let mut plain = TcpStream::connect(broker.addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, plain.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_the_certificate_keeps_every_open_connection() {
    let ca = TestCa::new("reload");
    let (cert, key, _) = ca.write_leaf(1);
    let broker = tls_broker(&cert, &key);
    let mut open = Vec::new();
    for i in 0..5 {
        let (mut c, serial) = wss_user(&ca, broker.addr, &format!("old{i}")).await;
        assert_eq!(serial, vec![1]);
        c.send(json!({"type":"join","room":"r","id":1})).await;
        c.recv_type("ack").await;
        open.push(c);
    }
    // A new pair is written in place: the file watcher loads it.
    ca.write_leaf(2);
    let started = Instant::now();
    loop {
        let (_, serial) = tls_connect(&ca, broker.addr).await;
        if serial == vec![2] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad pair (the key of another certificate) is refused and the
    // current one stays, both by reload_tls (SIGHUP) and by the watcher.
    let (_, other_key, _) = ca.leaf(3, unix_now() - 60, unix_now() + 86_400);
    write_atomically(&key, &other_key);
    let err = broker.broker().reload_tls().expect_err("mismatched key");
    assert!(
        err.to_string()
            .contains("is not the private key of the certificate"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, serial) = tls_connect(&ca, broker.addr).await;
    assert_eq!(serial, vec![2], "the pair in use stays");
    // Every connection opened before the reloads still works.
    open[0]
        .send(json!({"type":"publish","room":"r","data":"after reload"}))
        .await;
    for c in &mut open {
        let m = c.recv_type("message").await;
        assert_eq!(m["data"], "after reload");
    }
    let (mut fresh, serial) = wss_user(&ca, broker.addr, "new").await;
    assert_eq!(serial, vec![2]);
    fresh.send(json!({"type":"ping","id":9})).await;
    assert_eq!(fresh.recv_type("pong").await["id"], 9);
}

#[test]
fn startup_refuses_unusable_pairs_saying_why() {
    let ca = TestCa::new("startup");
    let now = unix_now();
    let start = |cert: &Path, key: &Path| {
        let mut config = shardcast::Config::load_from(
            None,
            &[],
            &shardcast::Overrides {
                listen: Some("127.0.0.1:0".into()),
                shards: Some(1),
                ..Default::default()
            },
        )
        .expect("config");
        config.server.tls_cert_file = Some(cert.display().to_string());
        config.server.tls_key_file = Some(key.display().to_string());
        match shardcast::Broker::start(config) {
            Ok(b) => {
                b.shutdown();
                panic!("started with {}", cert.display())
            }
            Err(e) => e.to_string(),
        }
    };
    let write = |name: &str, text: &str| {
        let p = ca.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let (cert, key, _) = ca.leaf(1, now - 60, now + 86_400);
    let (_, other_key, _) = ca.leaf(2, now - 60, now + 86_400);
    let (expired, expired_key, _) = ca.leaf(3, now - 10 * 86_400, now - 86_400);
    let (cert_p, key_p) = (write("c.pem", &cert), write("k.pem", &key));
    let missing = ca.dir.join("missing.pem");
    let said = start(&missing, &key_p);
    assert!(
        said.contains("cannot read server.tls_cert_file") && said.contains("missing.pem"),
        "{said}"
    );
    let said = start(&cert_p, &missing);
    assert!(said.contains("cannot read server.tls_key_file"), "{said}");
    let said = start(&cert_p, &write("other.pem", &other_key));
    assert!(
        said.contains("is not the private key of the certificate"),
        "{said}"
    );
    let said = start(
        &write("old.pem", &expired),
        &write("old-key.pem", &expired_key),
    );
    assert!(said.contains("expired at"), "{said}");
    let said = start(&write("junk.pem", "not a certificate"), &key_p);
    assert!(said.contains("holds no PEM certificate"), "{said}");
    let said = start(&cert_p, &write("junk-key.pem", "nope"));
    assert!(said.contains("no PEM private key"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_python3), ignore = "python3 not found on PATH")]
async fn python_ssl_client_speaks_wss_with_the_test_ca() {
    let ca = TestCa::new("python");
    let (cert, key, _) = ca.write_leaf(7);
    let ca_file = ca.dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("write CA");
    let broker = tls_broker(&cert, &key);
    let script = r#"
import base64, json, os, socket, ssl, sys
port = int(sys.argv[1]); ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws?user=py HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, rest = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
            rest += s.recv(4096)
        n = rest[1] & 0x7F
        assert n < 126, n
        print(json.loads(rest[2:2 + n])["type"], s.version())
"#;
    let out = tokio::task::spawn_blocking({
        let port = broker.addr.port().to_string();
        let ca_file = ca_file.clone();
        move || {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(port)
                .arg(ca_file)
                .output()
                .expect("run python3")
        }
    })
    .await
    .expect("python task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("welcome TLSv1.3"), "{stdout}");
}

/// SHA-256 of `spki`, base64: what `--ignore-certificate-errors-spki-list`
/// takes.
pub(crate) fn spki_pin(spki: &[u8]) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_the_binary() {
    let ca = TestCa::new("sighup");
    let (cert, key, _) = ca.write_leaf(1);
    let cert_s = cert.display().to_string();
    let key_s = key.display().to_string();
    let child = crate::process::ChildBroker::spawn(&[
        ("SHARDCAST_SERVER__TLS_CERT_FILE", &cert_s),
        ("SHARDCAST_SERVER__TLS_KEY_FILE", &key_s),
    ]);
    let (_, serial) = tls_connect(&ca, child.addr).await;
    assert_eq!(serial, vec![1]);
    child.signal("HUP");
    let started = Instant::now();
    while child.log_count("TLS certificate reloaded") == 0 {
        assert!(
            started.elapsed() < RECV_TIMEOUT,
            "no reload logged after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken pair: SIGHUP logs why and keeps serving the old one.
    std::fs::write(&key, "broken").expect("write");
    child.signal("HUP");
    let started = Instant::now();
    while child.log_count("TLS certificate not reloaded") == 0 {
        assert!(
            started.elapsed() < RECV_TIMEOUT,
            "no refusal logged after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, serial) = tls_connect(&ca, child.addr).await;
    assert_eq!(serial, vec![1]);
}

/// A certificate that expires within 14 days starts with a warning saying
/// when; a peer that opens TCP to a TLS listener and never completes its
/// handshake is cut off at `limits.handshake_timeout_ms`, like a slow
/// plain upgrade, and its descriptor comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soon_expiring_certificate_warns_and_a_stalled_handshake_is_cut_off() {
    let ca = TestCa::new("expiring");
    let now = unix_now();
    let (cert, key, _) = ca.leaf(7, now - 3600, now + 3 * 86_400);
    let (cert_path, key_path) = (ca.dir.join("cert.pem"), ca.dir.join("key.pem"));
    write_atomically(&cert_path, &cert);
    write_atomically(&key_path, &key);
    let cert_s = cert_path.display().to_string();
    let key_s = key_path.display().to_string();
    let child = crate::process::ChildBroker::spawn(&[
        ("SHARDCAST_SERVER__TLS_CERT_FILE", &cert_s),
        ("SHARDCAST_SERVER__TLS_KEY_FILE", &key_s),
        ("SHARDCAST_LIMITS__HANDSHAKE_TIMEOUT_MS", "500"),
    ]);
    assert!(
        child.log_count("the TLS certificate expires within 14 days") >= 1,
        "no expiry warning at start"
    );
    let (_, serial) = tls_connect(&ca, child.addr).await;
    assert_eq!(serial, vec![7], "the soon-expiring pair still serves");

    let fds_before = child.open_fds();
    let mut stalled = TcpStream::connect(child.addr).await.expect("connect");
    // Half a ClientHello record header, then silence.
    stalled.write_all(&[0x16, 0x03]).await.expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(RECV_TIMEOUT, stalled.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled handshake was not closed: {read:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed before the handshake timeout: {took:?}"
    );
    drop(stalled);
    let started = Instant::now();
    while child.open_fds() > fds_before {
        assert!(
            started.elapsed() < RECV_TIMEOUT,
            "descriptor not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
