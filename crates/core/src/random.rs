//! Random bytes from the operating system for secrets, salts and codes.

use zeroize::Zeroizing;

/// `n` random bytes. Panics only if the OS has no randomness at all, where nothing is safe.
pub fn bytes(n: usize) -> Zeroizing<Vec<u8>> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system gave no random bytes");
    buf
}

/// A uniformly random number below `bound` (rejection sampling, no modulo bias).
pub fn below(bound: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let b = bytes(8);
        let mut arr = [0u8; 8];
        arr.copy_from_slice(&b);
        let v = u64::from_le_bytes(arr);
        if v < zone {
            return v % bound;
        }
    }
}
