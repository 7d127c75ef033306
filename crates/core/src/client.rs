//! The real client address: `X-Forwarded-For` and `X-Real-IP` are believed only when they
//! come from a trusted proxy, because anyone else can write them.

use crate::access::{RuleError, parse_network};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The proxies whose forwarding headers are believed; empty means trust nobody.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs or single addresses; the error names the first bad one as `trusted_proxies[N]` (from 1).
    pub fn new(cidrs: &[String]) -> Result<Self, RuleError> {
        let networks = cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                parse_network(c).map_err(|reason| RuleError::invalid(format!("trusted_proxies[{}]", i + 1), c, reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// Whether `peer` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|n| n.contains(&peer))
    }

    /// The client address: the peer itself unless the peer is trusted; then `X-Forwarded-For`
    /// walked right to left skipping trusted hops (the first untrusted entry is the client; if
    /// all are trusted, the left-most), else `X-Real-IP`, else the peer. A malformed entry stops
    /// the walk and the last good address is used. Several XFF headers must be joined with `,`.
    pub fn client_ip(&self, peer: IpAddr, x_forwarded_for: Option<&str>, x_real_ip: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        if let Some(ip) = x_forwarded_for.and_then(|xff| self.walk(xff)) {
            return ip;
        }
        x_real_ip.and_then(parse_entry).unwrap_or(peer)
    }

    /// The right-most untrusted entry, else the last good one seen; `None` if the right-most is bad.
    fn walk(&self, xff: &str) -> Option<IpAddr> {
        let mut last_good = None;
        for entry in xff.rsplit(',') {
            // Everything left of a malformed entry was written by someone we cannot vouch for.
            let Some(ip) = parse_entry(entry) else { break };
            if !self.trusts(ip) {
                return Some(ip);
            }
            last_good = Some(ip);
        }
        last_good
    }
}

/// One forwarded address: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]` or `[::1]:80`, spaces allowed.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let s = entry.trim();
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

    #[test]
    fn untrusted_peer_spoofing_xff_is_ignored() {
        let p = proxies();
        let attacker = ip("203.0.113.9");
        assert_eq!(p.client_ip(attacker, Some("10.0.0.1"), Some("10.0.0.2")), attacker);
        assert_eq!(p.client_ip(attacker, Some("1.1.1.1, 10.0.0.1"), None), attacker);
        // Nobody is trusted by default.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), Some("1.1.1.1"), Some("2.2.2.2")),
            ip("10.0.0.1")
        );
        assert!(
            TrustedProxies::new(&[])
                .unwrap()
                .client_ip(ip("127.0.0.1"), Some("1.1.1.1"), None)
                == ip("127.0.0.1")
        );
    }

    #[test]
    fn chain_through_two_trusted_proxies() {
        let p = proxies();
        // client 198.51.100.4 → edge proxy 192.0.2.1 → inner proxy 10.1.1.1 → us
        let xff = "6.6.6.6, 198.51.100.4, 192.0.2.1";
        assert_eq!(p.client_ip(ip("10.1.1.1"), Some(xff), None), ip("198.51.100.4"));
        // The client's own forged entry (6.6.6.6, left of the real one) is never reached.
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), Some("198.51.100.4,192.0.2.1"), None),
            ip("198.51.100.4")
        );
        // All hops trusted: the left-most.
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), Some("10.2.2.2, 192.0.2.1"), None),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn real_ip_and_peer_are_fallbacks() {
        let p = proxies();
        let proxy = ip("10.0.0.5");
        assert_eq!(p.client_ip(proxy, None, Some("198.51.100.4")), ip("198.51.100.4"));
        assert_eq!(p.client_ip(proxy, Some(""), Some("198.51.100.4")), ip("198.51.100.4"));
        assert_eq!(p.client_ip(proxy, None, Some("nonsense")), proxy);
        assert_eq!(p.client_ip(proxy, None, None), proxy);
        assert_eq!(
            p.client_ip(proxy, Some("198.51.100.7"), Some("198.51.100.4")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_entries_stop_the_walk() {
        let p = proxies();
        let proxy = ip("10.0.0.5");
        assert_eq!(
            p.client_ip(proxy, Some("1.2.3.4, garbage, 10.9.9.9"), None),
            ip("10.9.9.9")
        );
        assert_eq!(p.client_ip(proxy, Some("1.2.3.4,,10.9.9.9"), None), ip("10.9.9.9"));
        assert_eq!(p.client_ip(proxy, Some("unknown"), None), proxy);
        assert_eq!(
            p.client_ip(proxy, Some("1.2.3.4, 300.1.1.1"), Some("5.5.5.5")),
            ip("5.5.5.5")
        );
        assert_eq!(p.client_ip(proxy, Some("1.2.3.4, fe80::1%eth0"), None), proxy);
        assert_eq!(p.client_ip(proxy, Some("1.2.3.4, _hidden"), None), proxy);
    }

    #[test]
    fn ports_brackets_spaces_and_mapped_addresses() {
        let p = proxies();
        let proxy = ip("::ffff:10.0.0.5");
        assert!(p.trusts(proxy));
        assert_eq!(
            p.client_ip(proxy, Some("  198.51.100.4:5678  "), None),
            ip("198.51.100.4")
        );
        assert_eq!(p.client_ip(proxy, Some("[2001:db8::7]:80"), None), ip("2001:db8::7"));
        assert_eq!(p.client_ip(proxy, Some("[2001:db8::7]"), None), ip("2001:db8::7"));
        assert_eq!(
            p.client_ip(proxy, Some("2001:db8::7, [fd00::1]:443"), None),
            ip("2001:db8::7")
        );
        assert_eq!(
            p.client_ip(proxy, Some("::ffff:198.51.100.4"), None),
            ip("198.51.100.4")
        );
        assert_eq!(p.client_ip(ip("::ffff:203.0.113.9"), None, None), ip("203.0.113.9"));
        // A mapped address of a trusted proxy in the chain is skipped like the IPv4 one.
        assert_eq!(
            p.client_ip(proxy, Some("198.51.100.4, ::ffff:192.0.2.1"), None),
            ip("198.51.100.4")
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
        fn client_is_the_peer_or_a_listed_address(
            xff in "\\PC{0,40}|((10\\.0\\.0\\.[0-9]|198\\.51\\.100\\.[0-9]|\\[fd00::1\\]:80|x|)(:[0-9]{1,5})? ?, ?){0,6}",
            real in proptest::option::of("\\PC{0,20}|198\\.51\\.100\\.[0-9]"),
        ) {
            let p = proxies();
            let peer = ip("10.0.0.5");
            let got = p.client_ip(peer, Some(&xff), real.as_deref());
            let listed = xff.split(',').chain(real.as_deref()).filter_map(parse_entry).any(|e| e == got);
            prop_assert!(got == peer || listed, "{xff:?} {real:?} -> {got}");
            // Whatever the headers say, an untrusted peer is its own client.
            prop_assert_eq!(p.client_ip(ip("203.0.113.1"), Some(&xff), real.as_deref()), ip("203.0.113.1"));
        }
    }
}
