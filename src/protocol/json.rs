//! Bounds on client JSON that serde does not enforce: nesting depth.
//!
//! serde_json skips a value it keeps as raw text (`data`, kept as
//! [`serde_json::value::RawValue`]) without a recursion limit, so a client
//! could store `data` nested 30,000 arrays deep in a room's history, where it
//! breaks every later reader whose parser recurses (Python's `json` raises
//! `RecursionError`). Every front door that takes client JSON checks it with
//! [`shallow`] (against `limits.max_json_depth`) before the value goes
//! anywhere: WebSocket frames (`publish`, `send`, `broadcast`), the HTTP
//! API's bodies, and the Pusher endpoint's client events, presence
//! `channel_data`, sign-in `user_data` and HTTP API events.
//!
//! **Invariant:** the check is one pass over the bytes with a counter (no
//! recursion, no allocation), so its cost is O(size) whatever the input.

use crate::error::Refusal;

/// A JSON value nests arrays and objects deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON nests arrays and objects deeper than {max} levels")]
pub struct TooDeep {
    /// The bound that was passed.
    pub max: usize,
}

/// Check that `json` (one JSON value, already known to be valid or about to
/// be parsed by serde) opens at most `max` arrays and objects inside one
/// another: `1` and `"x"` have depth 0, `[1]` and `{}` depth 1, `[[1]]`
/// depth 2. Stops at the first byte past the bound.
///
/// On text that is not valid JSON the answer means nothing, but the scan
/// still ends in O(size) and never panics.
pub fn check_depth(json: &[u8], max: usize) -> Result<(), TooDeep> {
    scan(json, max).map(|_| ())
}

/// [`check_depth`] of the client value `field` against `max`
/// (`limits.max_json_depth`), refused as every front door refuses it:
/// `bad_request` naming the field and the limit.
pub(crate) fn shallow(field: &str, json: &[u8], max: usize) -> Result<(), Refusal> {
    check_depth(json, max).map_err(|_| Refusal::json_too_deep(field, max))
}

/// The deepest nesting of arrays and objects in `json` (see
/// [`check_depth`] for how depth counts).
pub fn depth(json: &[u8]) -> usize {
    scan(json, usize::MAX).unwrap_or(usize::MAX)
}

fn scan(json: &[u8], max: usize) -> Result<usize, TooDeep> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut bytes = json.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string: brackets in it do not count.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep { max });
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_arrays_and_objects_not_strings() {
        assert_eq!(depth(b"1"), 0);
        assert_eq!(depth(br#""[[[""#), 0);
        assert_eq!(depth(b"[]"), 1);
        assert_eq!(depth(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(depth(br#"["\"[[", ["\\", [{}]]]"#), 4);
        assert_eq!(depth(br#"[[1],[2],[[3]]]"#), 3);
    }

    #[test]
    fn the_bound_is_inclusive_and_checked_early() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_depth(deep(32).as_bytes(), 32), Ok(()));
        assert_eq!(
            check_depth(deep(33).as_bytes(), 32),
            Err(TooDeep { max: 32 })
        );
        // 30,000 levels, the attack of issue 15: refused, in one pass.
        let attack = deep(30_000);
        assert_eq!(check_depth(attack.as_bytes(), 64), Err(TooDeep { max: 64 }));
        assert_eq!(depth(attack.as_bytes()), 30_000);
    }

    #[test]
    fn agrees_with_serde_on_valid_json() {
        for text in [
            r#"{"x":[1,2,{"y":"]]]"}],"z":{}}"#,
            r#"[[[[[[]]]]],[]]"#,
            r#""\\\"{""#,
            r#"{"a\"[":{"b":[[["c"]]]}}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).expect("valid");
            assert_eq!(depth(text.as_bytes()), value_depth(&value), "{text}");
        }
    }

    fn value_depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
            serde_json::Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn garbage_ends_without_panicking() {
        for text in [&b"]]]]"[..], b"\"unterminated [[", b"\\", b"[\"\\"] {
            let _ = depth(text);
            let _ = check_depth(text, 1);
        }
    }
}
