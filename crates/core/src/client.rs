//! The real client address: `X-Forwarded-For` and `X-Real-IP` are believed only when they
//! come from a trusted proxy, because anyone else can write them.

use crate::access::{RuleError, parse_network};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// A set of networks (CIDRs or single addresses), e.g. PAM's `trusted_networks=`.
#[derive(Debug, Clone, Default)]
pub struct NetworkSet {
    networks: Vec<IpNet>,
}

impl NetworkSet {
    /// Parses CIDRs or single addresses; the error names the first bad one as `field[N]` (from 1).
    pub fn parse(field: &str, cidrs: &[String]) -> Result<Self, RuleError> {
        let networks = cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                parse_network(c).map_err(|reason| RuleError::invalid(format!("{field}[{}]", i + 1), c, reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkSet { networks })
    }

    /// Whether `ip` is in one of the networks (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// True when no network was given.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

/// The proxies whose forwarding headers are believed; empty means trust nobody.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: NetworkSet,
}

impl TrustedProxies {
    /// Parses CIDRs or single addresses; the error names the first bad one as `trusted_proxies[N]` (from 1).
    pub fn new(cidrs: &[String]) -> Result<Self, RuleError> {
        Ok(TrustedProxies {
            networks: NetworkSet::parse("trusted_proxies", cidrs)?,
        })
    }

    /// Whether `peer` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.networks.contains(peer)
    }

    /// The client address: the peer itself unless the peer is trusted. From a trusted peer:
    /// `X-Forwarded-For` (every value of it, in order), walked right to left skipping trusted
    /// hops: the first untrusted entry is the client; if all are trusted, the left-most.
    /// `X-Real-IP` is read only when a trusted peer sent no `X-Forwarded-For` at all.
    /// Values are parsed from raw bytes, entry by entry: one malformed entry anywhere
    /// (non-ASCII, empty, not an address), or several `X-Real-IP`, is an error (answer 400),
    /// never skipped, so a forged byte cannot make another header the one believed.
    pub fn client_ip(
        &self,
        peer: IpAddr,
        x_forwarded_for: &[&[u8]],
        x_real_ip: &[&[u8]],
    ) -> Result<IpAddr, ForwardedError> {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return Ok(peer);
        }
        if !x_forwarded_for.is_empty() {
            let mut chain = Vec::new();
            for value in x_forwarded_for {
                for entry in value.split(|b| *b == b',') {
                    chain.push(parse_entry(entry).ok_or(ForwardedError::ForwardedFor)?);
                }
            }
            let client = chain.iter().rev().find(|ip| !self.trusts(**ip)).or(chain.first());
            return Ok(client.copied().unwrap_or(peer));
        }
        match x_real_ip {
            [] => Ok(peer),
            [one] => parse_entry(one).ok_or(ForwardedError::RealIp),
            _ => Err(ForwardedError::RealIp),
        }
    }
}

/// Why a trusted proxy's description of the client address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedError {
    /// An `X-Forwarded-For` entry is not an IP address.
    #[error("X-Forwarded-For holds an entry that is not an IP address")]
    ForwardedFor,
    /// `X-Real-IP` is not one IP address, or came more than once.
    #[error("X-Real-IP is not exactly one IP address")]
    RealIp,
}

/// One forwarded address: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]` or `[::1]:80`, spaces
/// and tabs around it allowed; anything else (including any non-ASCII byte) is `None`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if !s.is_ascii() {
        return None;
    }
    let ip = if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Ok(sa) = s.parse::<SocketAddr>() {
        sa.ip()
    } else {
        s.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok()?
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(&["10.0.0.0/8".into(), "192.0.2.1".into(), "fd00::/8".into()]).unwrap()
    }

    /// `client_ip` with one XFF value (if any) and one X-Real-IP (if any).
    fn client(
        p: &TrustedProxies,
        peer: IpAddr,
        xff: Option<&str>,
        real: Option<&str>,
    ) -> Result<IpAddr, ForwardedError> {
        let xff: Vec<&[u8]> = xff.map(str::as_bytes).into_iter().collect();
        let real: Vec<&[u8]> = real.map(str::as_bytes).into_iter().collect();
        p.client_ip(peer, &xff, &real)
    }

    #[test]
    fn untrusted_peer_spoofing_xff_is_ignored() {
        let p = proxies();
        let attacker = ip("203.0.113.9");
        assert_eq!(client(&p, attacker, Some("10.0.0.1"), Some("10.0.0.2")), Ok(attacker));
        assert_eq!(client(&p, attacker, Some("1.1.1.1, 10.0.0.1"), None), Ok(attacker));
        // Garbage from a peer we do not believe is not even read.
        assert_eq!(client(&p, attacker, Some("\u{80}"), Some("x")), Ok(attacker));
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, ip("10.0.0.1"), Some("1.1.1.1"), Some("2.2.2.2")),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn chain_through_two_trusted_proxies() {
        let p = proxies();
        // client 198.51.100.4 → edge proxy 192.0.2.1 → inner proxy 10.1.1.1 → us
        let xff = "6.6.6.6, 198.51.100.4, 192.0.2.1";
        assert_eq!(client(&p, ip("10.1.1.1"), Some(xff), None), Ok(ip("198.51.100.4")));
        // All hops trusted: the left-most.
        assert_eq!(
            client(&p, ip("10.1.1.1"), Some("10.2.2.2, 192.0.2.1"), None),
            Ok(ip("10.2.2.2"))
        );
        // Several headers are one list, in order.
        let values: [&[u8]; 2] = [b"198.51.100.4", b"192.0.2.1"];
        assert_eq!(p.client_ip(ip("10.1.1.1"), &values, &[]), Ok(ip("198.51.100.4")));
    }

    #[test]
    fn real_ip_only_without_xff() {
        let p = proxies();
        let proxy = ip("10.0.0.5");
        assert_eq!(client(&p, proxy, None, Some("198.51.100.4")), Ok(ip("198.51.100.4")));
        assert_eq!(client(&p, proxy, None, None), Ok(proxy));
        assert_eq!(
            client(&p, proxy, Some("198.51.100.7"), Some("198.51.100.4")),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(client(&p, proxy, None, Some("nonsense")), Err(ForwardedError::RealIp));
        let two: [&[u8]; 2] = [b"198.51.100.4", b"198.51.100.5"];
        assert_eq!(p.client_ip(proxy, &[], &two), Err(ForwardedError::RealIp));
    }

    /// Regression (issue 11.3): one non-ASCII byte in XFF made the gateway believe X-Real-IP.
    #[test]
    fn xff_with_a_non_ascii_byte_never_falls_back_to_x_real_ip() {
        let p = proxies();
        let proxy = ip("10.0.0.5");
        let xff: [&[u8]; 1] = [b"\x80, 203.0.113.9"];
        let real: [&[u8]; 1] = [b"192.168.1.5"];
        assert_eq!(p.client_ip(proxy, &xff, &real), Err(ForwardedError::ForwardedFor));
        let xff: [&[u8]; 2] = [b"203.0.113.9", b"\xff"];
        assert_eq!(p.client_ip(proxy, &xff, &real), Err(ForwardedError::ForwardedFor));
    }

    #[test]
    fn malformed_entries_are_refused_not_skipped() {
        let p = proxies();
        let proxy = ip("10.0.0.5");
        for bad in [
            "1.2.3.4, garbage, 10.9.9.9",
            "1.2.3.4,,10.9.9.9",
            "unknown",
            "",
            "1.2.3.4, 300.1.1.1",
            "1.2.3.4, fe80::1%eth0",
            "1.2.3.4, _hidden",
            "garbage, 198.51.100.4",
        ] {
            assert_eq!(
                client(&p, proxy, Some(bad), Some("5.5.5.5")),
                Err(ForwardedError::ForwardedFor),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ports_brackets_spaces_and_mapped_addresses() {
        let p = proxies();
        let proxy = ip("::ffff:10.0.0.5");
        assert!(p.trusts(proxy));
        assert_eq!(
            client(&p, proxy, Some("  198.51.100.4:5678  "), None),
            Ok(ip("198.51.100.4"))
        );
        assert_eq!(client(&p, proxy, Some("\t198.51.100.4"), None), Ok(ip("198.51.100.4")));
        assert_eq!(client(&p, proxy, Some("[2001:db8::7]:80"), None), Ok(ip("2001:db8::7")));
        assert_eq!(client(&p, proxy, Some("[2001:db8::7]"), None), Ok(ip("2001:db8::7")));
        assert_eq!(
            client(&p, proxy, Some("2001:db8::7, [fd00::1]:443"), None),
            Ok(ip("2001:db8::7"))
        );
        assert_eq!(
            client(&p, proxy, Some("::ffff:198.51.100.4"), None),
            Ok(ip("198.51.100.4"))
        );
        assert_eq!(client(&p, ip("::ffff:203.0.113.9"), None, None), Ok(ip("203.0.113.9")));
        assert_eq!(
            client(&p, proxy, Some("198.51.100.4, ::ffff:192.0.2.1"), None),
            Ok(ip("198.51.100.4"))
        );
    }

    #[test]
    fn bad_proxy_entries_are_named() {
        let e = TrustedProxies::new(&["10.0.0.0/8".into(), "10.0.0.300".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("trusted_proxies[2]: \"10.0.0.300\": use a CIDR"), "{e}");
    }

    proptest! {
        #[test]
        fn client_is_the_peer_or_a_listed_address_or_refused(
            xff in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                "((10\\.0\\.0\\.[0-9]|198\\.51\\.100\\.[0-9]|\\[fd00::1\\]:80|x|)(:[0-9]{1,5})? ?, ?){0,6}"
                    .prop_map(String::into_bytes),
            ],
            real in proptest::option::of("\\PC{0,20}|198\\.51\\.100\\.[0-9]"),
        ) {
            let p = proxies();
            let peer = ip("10.0.0.5");
            let real: Vec<&[u8]> = real.as_deref().map(str::as_bytes).into_iter().collect();
            match p.client_ip(peer, &[&xff], &real) {
                Ok(got) => {
                    let listed = xff.split(|b| *b == b',').filter_map(parse_entry).any(|e| e == got);
                    prop_assert!(got == peer || listed, "{xff:?} -> {got}");
                    // Every entry parsed: nothing was skipped.
                    prop_assert!(xff.split(|b| *b == b',').all(|e| parse_entry(e).is_some()));
                }
                Err(e) => prop_assert_eq!(e, ForwardedError::ForwardedFor),
            }
            prop_assert_eq!(p.client_ip(ip("203.0.113.1"), &[&xff], &real), Ok(ip("203.0.113.1")));
        }
    }
}
