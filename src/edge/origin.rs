//! Which browser pages may open a WebSocket (`server.allowed_origins`), and
//! which `Host` a keyless API answers (loopback names only, against DNS
//! rebinding).

/// `server.allowed_origins`, parsed: exact origins and `*.` patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    exact: Vec<String>,
    /// (scheme with "://", ".domain[:port]") of `scheme://*.domain[:port]`.
    wildcard: Vec<(String, String)>,
}

impl Origins {
    /// Parse the list: each entry `scheme://host[:port]` or
    /// `scheme://*.domain[:port]`, scheme `http` or `https`, no path.
    pub(crate) fn parse(list: &[String]) -> Result<Origins, String> {
        let mut origins = Origins::default();
        for item in list {
            let lower = item.to_ascii_lowercase();
            let Some((scheme, rest)) = lower.split_once("://") else {
                return Err(format!(
                    "{item:?} is not an origin like https://app.example.com"
                ));
            };
            if !matches!(scheme, "http" | "https") {
                return Err(format!("{item:?}: the scheme must be http or https"));
            }
            if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
                return Err(format!(
                    "{item:?}: an origin is scheme://host[:port], without a path"
                ));
            }
            match rest.strip_prefix('*') {
                Some(suffix)
                    if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') =>
                {
                    origins
                        .wildcard
                        .push((format!("{scheme}://"), suffix.to_string()));
                }
                Some(_) => {
                    return Err(format!(
                        "{item:?}: a pattern is scheme://*.domain, with * as the first label only"
                    ));
                }
                None if rest.contains('*') => {
                    return Err(format!(
                        "{item:?}: a pattern is scheme://*.domain, with * as the first label only"
                    ));
                }
                None => origins.exact.push(lower),
            }
        }
        Ok(origins)
    }

    /// Whether no check is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// Whether a browser page of `origin` may connect.
    pub(crate) fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.exact.contains(&origin) {
            return true;
        }
        self.wildcard.iter().any(|(scheme, suffix)| {
            origin
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                        && !label.starts_with('.')
                })
        })
    }
}

/// Whether a `Host` header names this machine: `localhost`, `127.0.0.1`
/// or `[::1]`, with any port.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, rest))
                if rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port) =>
            {
                return inside == "::1";
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

fn is_port(digits: &str) -> bool {
    !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_origins() {
        let o = Origins::parse(&[
            "https://app.example.com".into(),
            "https://*.example.org".into(),
            "http://localhost:3000".into(),
        ])
        .expect("valid");
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!o.allows("http://app.example.com"));
        assert!(!o.allows("https://app.example.com.evil.net"));
        assert!(o.allows("https://a.example.org"));
        assert!(o.allows("https://a.b.example.org"));
        assert!(!o.allows("https://example.org"));
        assert!(!o.allows("https://evilexample.org"));
        assert!(!o.allows("https://a.example.org:8443"));
        assert!(!o.allows("https://x/.example.org"));
        assert!(o.allows("http://localhost:3000"));
        assert!(!o.allows("null"));
        for bad in [
            "example.com",
            "ftp://a.b",
            "https://a.b/path",
            "https://a.*.b",
            "https://*",
        ] {
            assert!(Origins::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:80",
            "localhost",
            "LocalHost:9",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8080",
            "127.0.0.2",
            "localhost.evil.com",
            "[::2]:80",
            "127.0.0.1:x",
            "",
            "[::1]x",
            "[::1]80",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
