//! The client's address behind HTTP proxies: `X-Forwarded-For` or
//! `Forwarded` (RFC 7239), believed only from `server.trusted_proxies`.
//!
//! **Invariant:** the address is the rightmost hop that is not a trusted
//! proxy, walking from the connection's own address leftwards; a client
//! can prepend any hops it likes, but never get past a trusted proxy that
//! appended the address it really came from. Only the header named by
//! `server.forwarded_header` is read, since a proxy that sets one passes
//! the other through from the client unchanged.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// CIDRs of proxies whose headers are believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parse `server.trusted_proxies` (CIDRs or single addresses).
    pub(crate) fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::with_capacity(list.len());
        for item in list {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is not a CIDR (10.0.0.0/8) or an address (10.1.2.3)"
                        ));
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 counts as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether none is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The client of a request that came over a connection from `conn`
    /// (already resolved by the PROXY protocol, if any), with `headers`.
    pub(crate) fn client(
        &self,
        conn: IpAddr,
        headers: &HeaderMap,
        which: ForwardedHeader,
    ) -> IpAddr {
        let conn = conn.to_canonical();
        if !self.contains(conn) {
            return conn;
        }
        let name = match which {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let mut client = conn;
        // Later header lines were appended later: walk them last first.
        for line in headers.get_all(name).iter().rev() {
            let Ok(line) = line.to_str() else {
                return client;
            };
            for hop in line.rsplit(',') {
                let parsed = match which {
                    ForwardedHeader::XForwardedFor => parse_hop(hop),
                    ForwardedHeader::Forwarded => forwarded_for(hop).and_then(parse_hop),
                };
                // An unreadable hop ends the walk at the last one known.
                let Some(ip) = parsed else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return client;
                }
            }
        }
        client
    }
}

/// The `for=` value of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as a hop names it: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]`, `[::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(name: &'static str, lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name, HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()]).expect("cidrs");
        let xff = ForwardedHeader::XForwardedFor;
        // A client's forged hops stay left of the address the proxy added.
        let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7, 10.1.1.1"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h, xff), ip("203.0.113.7"));
        // Several header lines are one list, in order.
        let h = headers("x-forwarded-for", &["6.6.6.6", "203.0.113.7:5000"]);
        assert_eq!(t.client(ip("10.2.2.2"), &h, xff), ip("203.0.113.7"));
        // From an untrusted peer the header is ignored.
        assert_eq!(t.client(ip("198.51.100.1"), &h, xff), ip("198.51.100.1"));
        // All hops trusted: the leftmost.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.8.8.8"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h, xff), ip("10.9.9.9"));
        // Garbage stops the walk at the last hop known.
        let h = headers("x-forwarded-for", &["203.0.113.7, nonsense"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h, xff), ip("10.0.0.1"));
        // IPv4-mapped peers are IPv4.
        assert_eq!(
            t.client(
                ip("::ffff:10.0.0.1"),
                &headers("x-forwarded-for", &["2001:db8::5"]),
                xff
            ),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn forwarded_header_and_the_other_one_ignored() {
        let t = TrustedProxies::parse(&["127.0.0.0/8".into()]).expect("cidrs");
        let mut h = headers(
            "forwarded",
            &[r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#],
        );
        h.append("x-forwarded-for", HeaderValue::from_static("9.9.9.9"));
        assert_eq!(
            t.client(ip("127.0.0.1"), &h, ForwardedHeader::Forwarded),
            ip("2001:db8::1")
        );
        let h = headers("forwarded", &["for=203.0.113.9"]);
        assert_eq!(
            t.client(ip("127.0.0.1"), &h, ForwardedHeader::XForwardedFor),
            ip("127.0.0.1"),
            "x-forwarded-for is the one configured"
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
