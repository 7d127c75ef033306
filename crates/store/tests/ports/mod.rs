//! Free loopback ports for the servers the tests start (one sequence per test binary).

/// A free TCP port on loopback (checked by binding it, then released).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Below the kernel's ephemeral range (32768 and up): a parallel test's client connection
    // can take a port from there between this check and the server's bind (seen in CI:
    // "Address already in use"). One sequence for the whole test binary.
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mixed = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(n.wrapping_mul(40_503));
        let port = 20_000 + (mixed % 12_700) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
