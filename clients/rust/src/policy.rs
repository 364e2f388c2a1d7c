//! After a connection ends: reconnect (after how long) or stop. The same
//! rules as the JavaScript client (`clients/js/src/policy.ts`):
//!
//! | how it ended | decision |
//! |---|---|
//! | refused 503 | wait `Retry-After` plus a backoff delay |
//! | refused 429 or another 5xx | backoff |
//! | refused with another 4xx (400, 401, 403, 404) | stop |
//! | failed before the upgrade (refused TCP, timeout) | backoff |
//! | closed 1008 `token expired`, with a token source | reconnect at once (jittered) |
//! | closed 1008 otherwise (kicked) | stop |
//! | closed 1001 (drain) | reconnect at once (jittered) |
//! | any other end after the upgrade | backoff |
//!
//! Backoff is full jitter: retry `n` (0-based) waits a uniformly random
//! time in `[0, min(max, min * 2^n)]`.

use std::time::Duration;

/// The close reason the broker gives when a connection's token expires.
pub(crate) const TOKEN_EXPIRED_REASON: &str = "token expired";

/// An HTTP refusal of the upgrade.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
}

/// How a connection (attempt) ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Closed {
    pub(crate) code: u16,
    pub(crate) reason: String,
    /// The upgrade succeeded (a welcome was read).
    pub(crate) opened: bool,
    pub(crate) refusal: Option<Refusal>,
}

impl Closed {
    pub(crate) fn failed(reason: impl Into<String>) -> Self {
        Closed {
            code: 1006,
            reason: reason.into(),
            opened: false,
            refusal: None,
        }
    }

    pub(crate) fn dropped(code: u16, reason: impl Into<String>) -> Self {
        Closed {
            code,
            reason: reason.into(),
            opened: true,
            refusal: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Reconnect { delay: Duration, reason: String },
    Stop { reason: String },
}

pub(crate) struct Context {
    pub(crate) attempt: u32,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) has_token_source: bool,
}

/// The full-jitter delay of retry `attempt`.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let window = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    window.mul_f64(fastrand::f64())
}

pub(crate) fn after_close(closed: &Closed, ctx: &Context) -> Decision {
    let retry = |attempt: u32| backoff(attempt, ctx.min, ctx.max);
    if let Some(r) = &closed.refusal {
        let mut what = format!("refused: {}", r.status);
        if let Some(code) = &r.code {
            what.push_str(&format!(" {code}"));
        }
        if let Some(message) = &r.message {
            what.push_str(&format!(": {message}"));
        }
        return match r.status {
            503 => {
                let wait = r.retry_after.unwrap_or(Duration::from_secs(1));
                Decision::Reconnect {
                    delay: wait + retry(ctx.attempt),
                    reason: format!("{what} (Retry-After {} ms)", wait.as_millis()),
                }
            }
            429 | 500.. => Decision::Reconnect {
                delay: retry(ctx.attempt),
                reason: what,
            },
            400..=499 => Decision::Stop { reason: what },
            _ => Decision::Reconnect {
                delay: retry(ctx.attempt),
                reason: what,
            },
        };
    }
    if !closed.opened {
        return Decision::Reconnect {
            delay: retry(ctx.attempt),
            reason: format!("could not connect ({})", closed.reason),
        };
    }
    let closed_by = if closed.reason.is_empty() {
        format!("closed {}", closed.code)
    } else {
        format!("closed {} ({})", closed.code, closed.reason)
    };
    match closed.code {
        1008 if closed.reason == TOKEN_EXPIRED_REASON && ctx.has_token_source => {
            Decision::Reconnect {
                delay: retry(0),
                reason: closed_by,
            }
        }
        1008 => Decision::Stop { reason: closed_by },
        1001 => Decision::Reconnect {
            delay: retry(0),
            reason: closed_by,
        },
        _ => Decision::Reconnect {
            delay: retry(ctx.attempt),
            reason: closed_by,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(attempt: u32) -> Context {
        Context {
            attempt,
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            has_token_source: false,
        }
    }

    #[test]
    fn backoff_stays_in_its_window() {
        for attempt in 0..40 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(1));
            let window =
                Duration::from_millis(100 * (1u64 << attempt.min(20))).min(Duration::from_secs(1));
            assert!(d <= window, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn refusals_and_closes() {
        let refused = |status, retry_after| Closed {
            code: 1006,
            reason: String::new(),
            opened: false,
            refusal: Some(Refusal {
                status,
                retry_after,
                code: None,
                message: None,
            }),
        };
        let Decision::Reconnect { delay, .. } =
            after_close(&refused(503, Some(Duration::from_secs(2))), &ctx(0))
        else {
            panic!("503 reconnects")
        };
        assert!(delay >= Duration::from_secs(2));
        assert!(matches!(
            after_close(&refused(401, None), &ctx(0)),
            Decision::Stop { .. }
        ));
        assert!(matches!(
            after_close(&refused(429, None), &ctx(0)),
            Decision::Reconnect { .. }
        ));
        assert!(matches!(
            after_close(&Closed::dropped(1008, "kicked"), &ctx(0)),
            Decision::Stop { .. }
        ));
        let Decision::Reconnect { delay, .. } = after_close(&Closed::dropped(1001, ""), &ctx(9))
        else {
            panic!("1001 reconnects")
        };
        assert!(
            delay <= Duration::from_millis(100),
            "1001: the first window, {delay:?}"
        );
    }
}
