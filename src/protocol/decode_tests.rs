//! Tests of the client frame decoder: every frame, every refusal.

use super::*;

fn code(text: &str) -> (Option<u64>, ErrorCode) {
    let e = decode_client_frame(text).expect_err("must fail");
    (e.id, e.refusal.code)
}

#[test]
fn valid_frames() {
    assert_eq!(
        decode_client_frame(r#"{"type":"join","room":"a","id":7,"since":3}"#),
        Ok(ClientFrame::Join {
            id: Some(7),
            room: "a",
            since: Some(3),
            epoch: None,
            create: true
        })
    );
    assert_eq!(
        decode_client_frame(r#"{"type":"join","room":"a","since":3,"epoch":"00ff00ff00ff00ff"}"#),
        Ok(ClientFrame::Join {
            id: None,
            room: "a",
            since: Some(3),
            epoch: Some("00ff00ff00ff00ff"),
            create: true
        })
    );
    assert_eq!(
        decode_client_frame(r#"{"type":"refresh","token":"a.b.c","id":2}"#),
        Ok(ClientFrame::Refresh {
            id: Some(2),
            token: "a.b.c"
        })
    );
    let f = decode_client_frame(r#"{"type":"publish","room":"r","data":{"x":[1,2]} }"#)
        .expect("publish");
    assert_eq!(
        f,
        ClientFrame::Publish {
            id: None,
            room: "r",
            data: r#"{"x":[1,2]}"#,
            exclude_self: false
        }
    );
    assert!(matches!(
        decode_client_frame(
            r#"{"type":"create","room":"r","overflow":"drop","history":5,"private":true}"#
        ),
        Ok(ClientFrame::Create {
            options: RoomOptions {
                overflow: Some(OverflowPolicy::Drop),
                history: Some(5),
                private: Some(true),
                ..
            },
            ..
        })
    ));
    assert_eq!(
        decode_client_frame(r#"{"type":"ping"}"#),
        Ok(ClientFrame::Ping { id: None })
    );
}

#[test]
fn shape_errors_in_order() {
    assert_eq!(code("not json"), (None, ErrorCode::BadRequest));
    assert_eq!(code("[1,2]"), (None, ErrorCode::BadRequest));
    assert_eq!(code(r#"{"id":1}"#), (Some(1), ErrorCode::BadRequest));
    assert_eq!(
        code(r#"{"type":"nope","id":2,"bogus":1}"#),
        (Some(2), ErrorCode::UnknownType)
    );
    assert_eq!(code(r#"{"type":7}"#), (None, ErrorCode::BadRequest));
    assert_eq!(
        code(r#"{"type":"ping","id":3,"bogus":1}"#),
        (Some(3), ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"ping","room":"a"}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"join","id":4}"#),
        (Some(4), ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"join","room":"a b","id":5}"#),
        (Some(5), ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"join","room":"a","since":-1}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"ping","id":9007199254740992}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"ping","id":1.5}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"publish","room":"a"}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"ping","type":"ping"}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"create","room":"a","max_members":0}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"create","room":"a","history":100000}"#),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code(r#"{"type":"create","room":"a","overflow":"later"}"#),
        (None, ErrorCode::BadRequest)
    );
}

#[test]
fn kind_indices_name_their_metrics_slots() {
    for (i, (kind, _)) in TYPES.iter().enumerate() {
        assert_eq!(crate::metrics::FRAME_KINDS[i], *kind);
    }
    let refresh = decode_client_frame(r#"{"type":"refresh","token":"t"}"#).expect("refresh");
    assert_eq!(crate::metrics::FRAME_KINDS[refresh.kind_index()], "refresh");
}

#[test]
fn v1_1_fields_are_checked() {
    for bad_frame in [
        r#"{"type":"join","room":"a","since":1,"epoch":7}"#,
        r#"{"type":"join","room":"a","since":1,"epoch":""}"#,
        r#"{"type":"join","room":"a","since":1,"epoch":"a b"}"#,
        r#"{"type":"join","room":"a","epoch":"x","epoch":"y"}"#,
        r#"{"type":"publish","room":"a","data":1,"epoch":"x"}"#,
        r#"{"type":"refresh"}"#,
        r#"{"type":"refresh","token":""}"#,
        r#"{"type":"refresh","token":null}"#,
        r#"{"type":"refresh","token":"a\/b"}"#,
        r#"{"type":"refresh","token":"t","room":"a"}"#,
        r#"{"type":"ping","token":"t"}"#,
    ] {
        assert_eq!(
            code(bad_frame),
            (None, ErrorCode::BadRequest),
            "{bad_frame}"
        );
    }
    let e = decode_client_frame(r#"{"type":"refreshh","id":1}"#).expect_err("unknown");
    assert!(e.refusal.message.contains("refresh"));
    // An epoch without since is accepted (and changes nothing).
    assert!(matches!(
        decode_client_frame(r#"{"type":"join","room":"a","epoch":"e"}"#),
        Ok(ClientFrame::Join {
            since: None,
            epoch: Some("e"),
            ..
        })
    ));
}

#[test]
fn escaped_names_are_decoded_then_checked() {
    assert!(matches!(
        decode_client_frame(r#"{"type":"join","room":"\u0061"}"#),
        Err(_) | Ok(ClientFrame::Join { room: "a", .. })
    ));
}
