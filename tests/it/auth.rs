//! Authentication and rights (PROTOCOL.md sections 1 and 3), with real
//! tokens signed by jsonwebtoken and keys from tests/fixtures.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shardcast::auth::Authenticator;
use shardcast::config::{AuthConfig, AuthMode};
use shardcast::perms::Perm;

use crate::harness::*;

use crate::harness::unix_now as now;

const SECRET: &str = JWT_SECRET;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600})
}

fn jwt_broker(f: impl FnOnce(&mut shardcast::Config)) -> Running {
    TestBroker::new()
        .with(|c| {
            c.auth.mode = AuthMode::Jwt;
            c.auth.secret = SECRET.into();
            f(c);
        })
        .start()
}

/// Connect with `token` in the query; the HTTP refusal (status, body).
async fn refused(broker: &Running, token: Option<&str>) -> (u16, Value) {
    let query = token.map(|t| format!("token={t}")).unwrap_or_default();
    broker.refused(&query).await
}

async fn unauthorized(broker: &Running, token: Option<&str>, needle: &str) {
    let (status, body) = refused(broker, token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert!(!message.contains(SECRET));
}

/// Once `auth.issuer` / `auth.audience` is set, a token must carry that
/// claim: one without it is refused like one with another value (RFC 7519
/// practice). Unset, the claim is not looked at.
#[tokio::test]
async fn iss_and_aud_are_required_once_configured_and_ignored_otherwise() {
    let token = |extra: Value| {
        let mut c = json!({"sub": "u", "exp": now() + 3600});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        hs256(c)
    };
    // (the configured claim, its value, another value, the claim left unset)
    for (claim, wanted, wrong, unset) in [
        ("iss", "https://auth.example", "https://evil.example", "aud"),
        ("aud", "chat", "billing", "iss"),
    ] {
        let broker = jwt_broker(|c| match claim {
            "iss" => c.auth.issuer = Some(wanted.into()),
            _ => c.auth.audience = Some(wanted.into()),
        });
        let lacks = format!("the token lacks the `{claim}` claim");
        unauthorized(&broker, Some(&token(json!({}))), &lacks).await;
        unauthorized(
            &broker,
            Some(&token(json!({ claim: wrong }))),
            "not accepted",
        )
        .await;
        with_token(&broker, &token(json!({ claim: wanted }))).await;
        // The claim that is not configured is not checked.
        with_token(&broker, &token(json!({ claim: wanted, unset: "anything" }))).await;
    }
    let audience = jwt_broker(|c| c.auth.audience = Some("chat".into()));
    with_token(&audience, &token(json!({"aud": ["billing", "chat"]}))).await;
}

#[tokio::test]
async fn every_401_reason_is_told_apart() {
    let broker = jwt_broker(|c| {
        c.auth.issuer = Some("shardcast-tests".into());
        c.auth.audience = Some("chat".into());
        c.auth.leeway_secs = 0;
    });
    let good = || json!({"sub":"u","exp":now()+3600,"iss":"shardcast-tests","aud":"chat"});
    unauthorized(&broker, None, "required").await;
    unauthorized(&broker, Some("not-a-jwt"), "malformed").await;
    let other = jsonwebtoken::encode(
        &Header::default(),
        &good(),
        &EncodingKey::from_secret(b"another-secret-another-secret-12345"),
    )
    .expect("sign");
    unauthorized(&broker, Some(&other), "signature").await;
    let mut expired = good();
    expired["exp"] = json!(now() - 10);
    unauthorized(&broker, Some(&hs256(expired)), "expired").await;
    let mut early = good();
    early["nbf"] = json!(now() + 600);
    unauthorized(&broker, Some(&hs256(early)), "not valid yet").await;
    let mut iss = good();
    iss["iss"] = json!("evil");
    unauthorized(&broker, Some(&hs256(iss)), "issuer").await;
    let mut aud = good();
    aud["aud"] = json!("other");
    unauthorized(&broker, Some(&hs256(aud)), "audience").await;
    let mut no_sub = good();
    no_sub.as_object_mut().expect("obj").remove("sub");
    unauthorized(&broker, Some(&hs256(no_sub)), "sub").await;
    // iss and aud are required once configured.
    let mut no_iss = good();
    no_iss.as_object_mut().expect("obj").remove("iss");
    unauthorized(&broker, Some(&hs256(no_iss)), "iss").await;
    let mut no_aud = good();
    no_aud.as_object_mut().expect("obj").remove("aud");
    unauthorized(&broker, Some(&hs256(no_aud)), "aud").await;
    let mut bad_perm = good();
    bad_perm["perms"] = json!(["publish", "root"]);
    unauthorized(&broker, Some(&hs256(bad_perm)), "unknown right").await;
    // alg "none": header and payload, no signature.
    use base64_url as b64;
    let none = format!(
        "{}.{}.",
        b64::encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64::encode(&good().to_string())
    );
    unauthorized(&broker, Some(&none), "").await;
    // Tampered payload: a valid token for `u` with the payload of `admin`.
    let token = hs256(good());
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = good();
    forged["sub"] = json!("admin");
    forged["perms"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64::encode(&forged.to_string()),
        parts[2]
    );
    unauthorized(&broker, Some(&tampered), "signature").await;
    // The good token works, from the header too.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            broker.url(""),
        )
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", hs256(good())).parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer header accepted");
    use futures_util::StreamExt;
    let first = ws.next().await.expect("frame").expect("ok");
    let welcome: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(welcome["user"], "u");
}

/// Minimal base64url without padding (what JWT uses), for forged tokens.
mod base64_url {
    pub(crate) fn encode(data: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = data.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let public = format!("{FIXTURES}/rsa-test-public.pem");
    let broker = TestBroker::new()
        .with(|c| {
            c.auth.mode = AuthMode::Jwt;
            c.auth.algorithms = vec!["RS256".into()];
            c.auth.public_key_file = Some(public.clone());
        })
        .start();
    // HS256 signed with the RSA public key's bytes as the HMAC secret.
    let pem = std::fs::read(&public).expect("key");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u"),
        &EncodingKey::from_secret(&pem),
    )
    .expect("sign");
    unauthorized(&broker, Some(&confused), "algorithm").await;
    // A real RS256 token works.
    let private = std::fs::read(format!("{FIXTURES}/rsa-test-private.pem")).expect("key");
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("rsa-user"),
        &EncodingKey::from_rsa_pem(&private).expect("rsa"),
    )
    .expect("sign");
    let c = with_token(&broker, &rs).await;
    drop(c);
}

#[tokio::test]
async fn es256_tokens() {
    let broker = TestBroker::new()
        .with(|c| {
            c.auth.mode = AuthMode::Jwt;
            c.auth.algorithms = vec!["ES256".into()];
            c.auth.public_key_file = Some(format!("{FIXTURES}/ec-test-public.pem"));
        })
        .start();
    let private = std::fs::read(format!("{FIXTURES}/ec-test-private.pem")).expect("key");
    let es = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("ec-user"),
        &EncodingKey::from_ec_pem(&private).expect("ec"),
    )
    .expect("sign");
    with_token(&broker, &es).await;
}

#[tokio::test]
async fn connect_right_and_per_user_cap() {
    let broker = jwt_broker(|c| {
        c.auth.require_connect = true;
        c.limits.max_connections_per_user = 1;
    });
    let mut no_connect = claims("u");
    no_connect["perms"] = json!(["publish"]);
    let (status, body) = refused(&broker, Some(&hs256(no_connect))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connect"))
    );
    let mut ok = claims("u");
    ok["perms"] = json!(["connect", "publish"]);
    let token = hs256(ok);
    let _first = with_token(&broker, &token).await;
    let (status, body) = refused(&broker, Some(&token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_connections"))
    );
}

#[tokio::test]
async fn each_frame_checks_its_right() {
    let broker = jwt_broker(|_| {});
    let mut admin = claims("admin");
    admin["perms"] = json!(["admin"]);
    let mut a = with_token(&broker, &hs256(admin)).await;
    a.ok(json!({"type":"create","room":"r"})).await;
    let mut nothing = claims("nobody");
    nothing["perms"] = json!([]);
    let mut c = with_token(&broker, &hs256(nothing)).await;
    for (frame, right) in [
        (json!({"type":"create","room":"x"}), "create"),
        (json!({"type":"join","room":"new-room"}), "create"),
        (json!({"type":"publish","room":"r","data":1}), "publish"),
        (json!({"type":"send","to":"admin","data":1}), "send"),
        (json!({"type":"broadcast","data":1}), "broadcast"),
        (json!({"type":"members","room":"r"}), "presence"),
    ] {
        let e = c.err(frame.clone(), "forbidden").await;
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(right)),
            "{frame}: {e}"
        );
    }
    // Joining an existing public room needs no right.
    c.join("r").await;
    // Admin has every right.
    a.ok(json!({"type":"broadcast","data":"all"})).await;
}

#[tokio::test]
async fn private_rooms_follow_room_patterns_and_names_show_in_presence() {
    let broker = jwt_broker(|_| {});
    let mut admin = claims("root");
    admin["perms"] = json!(["admin"]);
    let mut root = with_token(&broker, &hs256(admin)).await;
    root.ok(json!({"type":"create","room":"team-red","private":true}))
        .await;
    root.join("team-red").await;
    let mut member = claims("alice");
    member["name"] = json!("Alice Liddell");
    member["rooms"] = json!(["team-*"]);
    let mut alice = with_token(&broker, &hs256(member)).await;
    alice.join("team-red").await;
    let joined = root.recv_type("joined").await;
    assert_eq!(
        (joined["user"].clone(), joined["name"].clone()),
        (json!("alice"), json!("Alice Liddell"))
    );
    let list = alice.ok(json!({"type":"members","room":"team-red"})).await;
    let names: Vec<&str> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.contains(&"Alice Liddell"), "{list}");
    let mut outsider = claims("mallory");
    outsider["rooms"] = json!(["blue-*", "team-re"]);
    let mut mallory = with_token(&broker, &hs256(outsider)).await;
    mallory
        .err(json!({"type":"join","room":"team-red"}), "forbidden")
        .await;
    mallory
        .err(json!({"type":"members","room":"team-red"}), "forbidden")
        .await;
}

/// Assert `c`, whose token runs out in about 2 s, is closed with 1008 then.
async fn closes_1008_on_time(c: &mut Client) {
    let started = Instant::now();
    assert_eq!(c.close_code().await, Some(1008));
    let took = started.elapsed();
    assert!(
        took > Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn expired_token_closes_1008_on_time() {
    let broker = jwt_broker(|c| c.auth.leeway_secs = 0);
    let mut short = claims("brief");
    short["exp"] = json!(now() + 2);
    let mut c = with_token(&broker, &hs256(short)).await;
    closes_1008_on_time(&mut c).await;
}

fn with_perms(sub: &str, exp: u64, perms: &[&str]) -> String {
    hs256(json!({"sub": sub, "exp": exp, "perms": perms}))
}

/// This broker's `shardcast_frames_in_total` of frames of `kind`.
async fn frames_in(broker: &Running, kind: &str) -> u64 {
    let (_, text) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let needle = format!("type=\"{kind}\"");
    text.lines()
        .filter(|l| l.starts_with("shardcast_frames_in_total") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn refresh_replaces_rights_and_keeps_rooms() {
    let broker = jwt_broker(|_| {});
    let mut c = with_token(&broker, &with_perms("u", now() + 3600, &["create"])).await;
    c.join("r").await;
    c.err(json!({"type":"publish","room":"r","data":1}), "forbidden")
        .await;
    let exp = now() + 7200;
    let ack = c
        .ok(json!({"type":"refresh","token": with_perms("u", exp, &["publish"])}))
        .await;
    assert_eq!(ack["exp"], exp, "{ack}");
    // Still in the room, now with the right to publish into it.
    let published = c.ok(json!({"type":"publish","room":"r","data":2})).await;
    assert_eq!(published["seq"], 1);
    // ...and without the rights the new token lacks.
    c.err(json!({"type":"create","room":"other"}), "forbidden")
        .await;
    assert!(frames_in(&broker, "refresh").await >= 1);
}

#[tokio::test]
async fn a_refused_refresh_changes_nothing() {
    let broker = jwt_broker(|_| {});
    let mut c = with_token(
        &broker,
        &with_perms("u", now() + 3600, &["publish", "create"]),
    )
    .await;
    c.join("r").await;
    let other_sub = with_perms("mallory", now() + 3600, &["admin"]);
    let e = c
        .err(json!({"type":"refresh","token": other_sub}), "forbidden")
        .await;
    assert_says(&e, "sub");
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub":"u","exp":now()+3600,"perms":["admin"]}),
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef-0123"),
    )
    .expect("sign");
    let e = c
        .err(json!({"type":"refresh","token": forged}), "unauthorized")
        .await;
    assert_says(&e, "signature");
    let expired = with_perms("u", now() - 10, &[]);
    c.err(json!({"type":"refresh","token": expired}), "unauthorized")
        .await;
    c.err(
        json!({"type":"refresh","token":"not-a-jwt"}),
        "unauthorized",
    )
    .await;
    // The old token's rights are still the connection's.
    c.ok(json!({"type":"publish","room":"r","data":1})).await;
    c.ok(json!({"type":"create","room":"made"})).await;
    c.err(json!({"type":"broadcast","data":1}), "forbidden")
        .await;
}

#[tokio::test]
async fn refresh_moves_the_expiry_close() {
    let broker = jwt_broker(|c| c.auth.leeway_secs = 0);
    let mut c = with_token(&broker, &hs256(json!({"sub":"u","exp":now()+2}))).await;
    c.join("r").await;
    c.ok(json!({"type":"refresh","token": hs256(json!({"sub":"u","exp":now()+3600}))}))
        .await;
    // Past the first token's exp, the connection still works.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let pong = c.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
    c.ok(json!({"type":"publish","room":"r","data":1})).await;
    // A shorter token brings the close forward.
    c.ok(json!({"type":"refresh","token": hs256(json!({"sub":"u","exp":now()+2}))}))
        .await;
    closes_1008_on_time(&mut c).await;
}

#[tokio::test]
async fn refresh_is_a_bad_request_without_tokens() {
    let broker = TestBroker::new().start();
    let mut c = broker.user("u").await;
    let token = hs256(claims("u"));
    let e = c
        .err(json!({"type":"refresh","token": token}), "bad_request")
        .await;
    assert_says(&e, "jwt");
}

#[test]
fn startup_fails_clearly_on_bad_keys() {
    let jwt = |f: &dyn Fn(&mut AuthConfig)| {
        let mut c = AuthConfig {
            mode: AuthMode::Jwt,
            ..AuthConfig::default()
        };
        f(&mut c);
        Authenticator::from_config(&c)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    type Edit<'a> = &'a dyn Fn(&mut AuthConfig);
    let cases: Vec<(Edit<'_>, &str)> = vec![
        (&|_| {}, "auth.secret"),
        (&|c| c.secret = "short".into(), "at least 32 bytes"),
        (
            &|c| c.secret_file = Some("/nonexistent/secret".into()),
            "cannot read",
        ),
        (
            &|c| {
                c.secret = SECRET.into();
                c.algorithms = vec!["HS256".into(), "RS256".into()];
            },
            "mixes",
        ),
        (
            &|c| {
                c.secret = SECRET.into();
                c.algorithms = vec!["XX999".into()];
            },
            "unknown algorithm",
        ),
        (
            &|c| c.algorithms = vec!["RS256".into()],
            "auth.public_key_file",
        ),
        (
            &|c| {
                c.algorithms = vec!["RS256".into()];
                c.public_key_file = Some("/nonexistent.pem".into());
            },
            "cannot read",
        ),
        (
            &|c| {
                c.algorithms = vec!["RS256".into()];
                c.public_key_file = Some(format!("{FIXTURES}/ec-test-public.pem"));
            },
            "not a PEM public key",
        ),
        (
            &|c| {
                c.algorithms = vec!["ES256".into()];
                c.public_key_file = Some(format!("{FIXTURES}/ec-test-public.pem"));
                c.secret = SECRET.into();
            },
            "auth.secret",
        ),
    ];
    for (i, (f, needle)) in cases.into_iter().enumerate() {
        let err = jwt(f).expect_err("must fail");
        assert!(err.contains(needle), "case {i}: {err:?} lacks {needle:?}");
    }
    assert!(jwt(&|c| c.secret = SECRET.into()).is_ok());
    // Broker::start reports it as a startup error.
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
    config.auth.mode = AuthMode::Jwt;
    assert!(shardcast::Broker::start(config).is_err());
}

#[test]
fn none_mode_is_unchanged_and_ignores_tokens() {
    let a = Authenticator::from_config(&AuthConfig::default()).expect("none");
    let g = a.authenticate(Some("garbage")).expect("ignored");
    assert!(g.user.is_none());
    assert!(g.perms.allows(Perm::Publish) && !g.perms.allows(Perm::Broadcast));
}
