//! permessage-deflate (RFC 7692) on `/ws`: negotiated when offered, a room
//! message compressed once and read by a compressed member while a plain
//! member of the same room gets it plain, compressed client messages
//! inflated, and a decompression bomb closed with 1009.

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A raw connection offering permessage-deflate; returns it and the
/// server's `Sec-WebSocket-Extensions` answer (empty if none).
async fn offer(addr: SocketAddr, query: &str) -> (TcpStream, String) {
    let (s, head) = raw_upgrade(
        addr,
        &format!("/ws?{query}"),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    let ext = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (s, ext)
}

/// Raw deflate of `data` with the RFC 7692 tail removed.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("inflate");
    out
}

/// Read one server frame: (RSV1 set, payload inflated if it was set).
async fn read_frame(s: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut h = [0u8; 2];
    tokio::time::timeout(RECV_TIMEOUT, s.read_exact(&mut h))
        .await
        .expect("frame timeout")
        .expect("read");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.expect("len");
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.expect("len");
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("payload");
    let compressed = h[0] & 0x40 != 0;
    if compressed {
        (true, inflate(&payload))
    } else {
        (false, payload)
    }
}

/// The next JSON frame (skipping pings).
async fn next_json(s: &mut TcpStream) -> (bool, Value) {
    loop {
        let (compressed, payload) = read_frame(s).await;
        if let Ok(v) = serde_json::from_slice::<Value>(&payload) {
            return (compressed, v);
        }
    }
}

/// A masked client frame; RSV1 when `compressed`.
fn client_frame(payload: &[u8], compressed: bool) -> Vec<u8> {
    let mut f = raw_frame(true, 0x1, payload, true);
    if compressed {
        f[0] |= 0x40;
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_reaches_compressed_and_plain_members() {
    let broker = TestBroker::new()
        .with(|c| c.server.compression = true)
        .start();
    let (mut z, ext) = offer(broker.addr, "user=zipped").await;
    assert_eq!(
        ext,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(next_json(&mut z).await.1["type"], "welcome");
    let mut plain = broker.user("plain").await;
    plain.join("z").await;
    // A compressed join, then a compressed publish of 2 KiB of JSON.
    z.write_all(&client_frame(
        &deflate(br#"{"type":"join","room":"z","id":1}"#),
        true,
    ))
    .await
    .expect("write");
    loop {
        let (_, v) = next_json(&mut z).await;
        if v["type"] == "ack" {
            break;
        }
    }
    let text = "lorem ipsum dolor sit amet ".repeat(80);
    let publish = json!({"type":"publish","room":"z","data":{"text":text}}).to_string();
    z.write_all(&client_frame(&deflate(publish.as_bytes()), true))
        .await
        .expect("write");
    let got = loop {
        let (compressed, v) = next_json(&mut z).await;
        if v["type"] == "message" {
            assert!(compressed, "a 2 KiB message goes compressed");
            break v;
        }
    };
    assert_eq!(got["data"]["text"], text.as_str());
    let m = plain.recv_type("message").await;
    assert_eq!(m["data"]["text"], text.as_str());
    // Short messages go plain, even to a compressed member.
    plain
        .ok(json!({"type":"publish","room":"z","data":"short"}))
        .await;
    let (compressed, v) = loop {
        let (c, v) = next_json(&mut z).await;
        if v["type"] == "message" {
            break (c, v);
        }
    };
    assert_eq!((compressed, v["data"].clone()), (false, json!("short")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_closes_with_1009() {
    let broker = TestBroker::new()
        .with(|c| {
            c.server.compression = true;
            c.limits.max_message_bytes = 64 * 1024;
        })
        .start();
    let (mut s, _) = offer(broker.addr, "user=bomber").await;
    // 16 MiB of spaces deflates to a few KiB.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    s.write_all(&client_frame(&bomb, true))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut s).await, Some(1009));
    // Off by default: an offer is not answered, and RSV1 is a protocol error.
    let off = TestBroker::new().start();
    let (mut s, ext) = offer(off.addr, "user=a").await;
    assert_eq!(ext, "");
    s.write_all(&client_frame(&deflate(b"{}"), true))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut s).await, Some(1002));
}
