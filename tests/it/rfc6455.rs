//! Handshake and framing edge cases over raw TCP, with the close codes
//! RFC 6455 requires (issue 7, item 3). Every case ends only the offending
//! connection.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::harness::*;

async fn upgrade_status(broker: &Running, headers: &str) -> u16 {
    let (status, _) = http_get(broker.addr, &format!("/ws HTTP/1.1\r\n{headers}")).await;
    status
}

#[tokio::test]
async fn handshake_edge_cases_are_400() {
    let broker = TestBroker::new().start();
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let up = "Upgrade: websocket\r\nConnection: Upgrade";
    // Wrong version, missing version, missing key, missing Upgrade.
    assert_eq!(
        upgrade_status(
            &broker,
            &format!("{up}\r\nSec-WebSocket-Version: 8\r\n{key}")
        )
        .await,
        400
    );
    assert_eq!(
        upgrade_status(&broker, &format!("{up}\r\n{key}")).await,
        400
    );
    assert_eq!(
        upgrade_status(&broker, &format!("{up}\r\nSec-WebSocket-Version: 13")).await,
        400
    );
    assert_eq!(
        upgrade_status(&broker, &format!("Sec-WebSocket-Version: 13\r\n{key}")).await,
        400
    );
    // The right one still works.
    let mut c = broker.user("ok").await;
    c.ok(json!({"type":"join","room":"r"})).await;
}

/// Send `bytes` on a fresh raw connection and return the close code.
async fn close_after(broker: &Running, bytes: &[u8]) -> Option<u16> {
    let mut s = raw_ws(broker.addr, "").await;
    s.write_all(bytes).await.expect("write");
    raw_close_code(&mut s).await
}

#[tokio::test]
async fn framing_edge_cases_close_with_the_rfc_codes() {
    let broker = TestBroker::new().start();
    let mut bystander = broker.user("bystander").await;
    bystander.join("calm").await;

    // Control frame with a payload over 125 bytes: 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x9, &[0; 126], true)).await,
        Some(1002)
    );
    // Fragmented control frame: 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(false, 0x9, b"x", true)).await,
        Some(1002)
    );
    // Reserved opcodes (data and control): 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x3, b"", true)).await,
        Some(1002)
    );
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0xB, b"", true)).await,
        Some(1002)
    );
    // RSV bits without an extension: 1002.
    for rsv in [0x40u8, 0x20, 0x10] {
        let mut f = raw_frame(true, 0x1, br#"{"type":"ping"}"#, true);
        f[0] |= rsv;
        assert_eq!(close_after(&broker, &f).await, Some(1002), "rsv {rsv:#x}");
    }
    // Close with an invalid code (1005 may not be sent; 999 is out of range): 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x8, &1005u16.to_be_bytes(), true)).await,
        Some(1002)
    );
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x8, &999u16.to_be_bytes(), true)).await,
        Some(1002)
    );
    // Close with a one-byte payload: 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x8, &[1], true)).await,
        Some(1002)
    );
    // Close with an invalid UTF-8 reason: 1007.
    let mut reason = 1000u16.to_be_bytes().to_vec();
    reason.extend_from_slice(&[0xC0, 0xAF]);
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x8, &reason, true)).await,
        Some(1007)
    );
    // A valid close is echoed with its code.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x8, &4321u16.to_be_bytes(), true)).await,
        Some(4321)
    );
    // 64-bit length with the top bit set: 1002.
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(close_after(&broker, &huge).await, Some(1002));
    // Continuation without a message: 1002.
    assert_eq!(
        close_after(&broker, &raw_frame(true, 0x0, b"x", true)).await,
        Some(1002)
    );

    // The bystander never noticed.
    bystander
        .ok(json!({"type":"publish","room":"calm","data":"still"}))
        .await;
    assert_eq!(bystander.recv_type("message").await["data"], "still");
}

#[tokio::test]
async fn ping_inside_a_fragmented_message_and_zero_length_frames() {
    let broker = TestBroker::new().start();
    let mut s = raw_ws(broker.addr, "").await;
    let text = br#"{"type":"ping","id":7}"#;
    let mut bytes = raw_frame(false, 0x1, &text[..5], true);
    bytes.extend(raw_frame(true, 0x9, b"hb", true)); // ping between fragments
    bytes.extend(raw_frame(false, 0x0, b"", true)); // zero-length continuation
    bytes.extend(raw_frame(true, 0x0, &text[5..], true));
    bytes.extend(raw_frame(true, 0xA, b"", true)); // unsolicited empty pong: ignored
    s.write_all(&bytes).await.expect("write");
    // Expect: welcome, pong control frame "hb", then the JSON pong with id 7.
    let frames = read_server_frames(&mut s, 3).await;
    assert_eq!(frames[0].0, 0x1);
    assert!(String::from_utf8_lossy(&frames[0].1).contains("welcome"));
    assert_eq!((frames[1].0, frames[1].1.as_slice()), (0xA, &b"hb"[..]));
    let pong: serde_json::Value = serde_json::from_slice(&frames[2].1).expect("json");
    assert_eq!(pong, json!({"type":"pong","id":7}));
    // A zero-length text message is not JSON: bad_request, connection stays.
    s.write_all(&raw_frame(true, 0x1, b"", true))
        .await
        .expect("write");
    let frames = read_server_frames(&mut s, 1).await;
    let err: serde_json::Value = serde_json::from_slice(&frames[0].1).expect("json");
    assert_eq!(err["code"], "bad_request");
}

/// Read `n` whole server frames: (opcode, payload).
async fn read_server_frames(s: &mut tokio::net::TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        while buf.len() >= 2 && out.len() < n {
            let len7 = (buf[1] & 0x7F) as usize;
            let (hdr, len) = match len7 {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                126 | 127 => break,
                l => (2, l),
            };
            if buf.len() < hdr + len {
                break;
            }
            out.push((buf[0] & 0x0F, buf[hdr..hdr + len].to_vec()));
            buf.drain(..hdr + len);
        }
        if out.len() >= n {
            break;
        }
        let read = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut chunk))
            .await
            .expect("timed out reading frames")
            .expect("read");
        assert!(read > 0, "closed early");
        buf.extend_from_slice(&chunk[..read]);
    }
    out
}
