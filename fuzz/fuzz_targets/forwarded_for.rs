//! X-Forwarded-For / X-Real-IP from the network: never a panic; from an untrusted peer the
//! client is the peer; otherwise the client is the peer or an address the headers listed,
//! and a header with any unparseable entry is refused rather than skipped.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_core::client::TrustedProxies;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let proxies = TrustedProxies::new(&["10.0.0.0/8".into(), "fd00::/8".into()]).expect("networks");
    // First line: X-Real-IP; the others: X-Forwarded-For values.
    let mut lines = data.split(|b| *b == b'\n');
    let real: Vec<&[u8]> = lines.next().into_iter().filter(|l| !l.is_empty()).collect();
    let xff: Vec<&[u8]> = lines.collect();
    let stranger: IpAddr = "203.0.113.1".parse().expect("address");
    assert_eq!(proxies.client_ip(stranger, &xff, &real), Ok(stranger));
    let proxy: IpAddr = "10.0.0.5".parse().expect("address");
    if let Ok(ip) = proxies.client_ip(proxy, &xff, &real) {
        let listed = xff
            .iter()
            .chain(&real)
            .flat_map(|v| v.split(|b| *b == b','))
            .filter_map(|e| std::str::from_utf8(e).ok())
            .filter_map(address)
            .any(|e| e == ip);
        assert!(ip == proxy || listed, "{ip} from {xff:?} {real:?}");
    }
});

/// An entry's address, written independently of the parser under test.
fn address(entry: &str) -> Option<IpAddr> {
    let s = entry.trim_matches([' ', '\t']);
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}
