//! Unit tests of the subscriber's RESP reader and command writer.

use super::*;

async fn parse(bytes: &[u8]) -> Result<Resp, String> {
    let mut reader = BufReader::new(bytes);
    read_value(&mut reader, 16).await
}

#[tokio::test]
async fn reads_pubsub_frames() {
    let msg = parse(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n").await;
    match event_of(msg.expect("frame")) {
        Some(SubEvent::Message { channel, payload }) => {
            assert_eq!((channel.as_str(), &payload[..]), ("ch", &b"hello"[..]));
        }
        other => panic!("{other:?}"),
    }
    let sub = parse(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n").await;
    assert!(matches!(event_of(sub.expect("frame")), Some(SubEvent::Subscribed(c)) if c == "ch"));
    let pong = parse(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    assert!(matches!(
        event_of(pong.expect("frame")),
        Some(SubEvent::Pong)
    ));
}

#[test]
fn short_arrays_and_odd_bytes_are_errors_not_panics() {
    // Seen reading the reader for the `resp_reader` fuzz target: a
    // `subscribe` with no channel, and a line starting with a
    // multi-byte character.
    for input in [
        &b"*1\r\n$9\r\nsubscribe\r\n"[..],
        b"*1\r\n$11\r\nunsubscribe\r\n",
        "\u{e9}x\r\n".as_bytes(),
    ] {
        let (events, end) = read_all(input, 64);
        assert!(events.is_empty(), "{events:?}");
        assert!(!end.is_empty());
    }
}

#[tokio::test]
async fn refuses_what_it_cannot_bound() {
    assert!(
        parse(b"$17\r\n01234567890123456\r\n").await.is_err(),
        "over max_payload"
    );
    assert!(parse(b"*100\r\n").await.is_err(), "long array");
    assert!(parse(b"*1\r\n*1\r\n:1\r\n").await.is_err(), "nested array");
    assert!(parse(b"?x\r\n").await.is_err(), "unknown type");
    assert!(parse(b"").await.is_err(), "closed");
    assert!(parse(b":12").await.is_err(), "no CRLF");
    let long_line = vec![b'+'; 4096];
    assert!(parse(&long_line).await.is_err(), "endless line");
}

#[test]
fn commands_are_resp_arrays() {
    let mut out = Vec::new();
    push_command(&mut out, "SUBSCRIBE", [&b"a"[..], b"bc"].into_iter());
    assert_eq!(out, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\nbc\r\n");
}
