//! Cross-check against oathtool (oath-toolkit, Debian package `oathtool`) on random secrets,
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report
//! algorithms, digits, periods, times and counters.

use portcullis_otp::{Algorithm, Secret, hotp, totp};
use std::process::Command;

/// xorshift64*: reproducible from the printed seed, no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn oathtool(args: &[String]) -> String {
    let out = Command::new("oathtool")
        .args(args)
        .output()
        .expect("oathtool is not installed; run .ci/run or `apt-get install oathtool`");
    assert!(
        out.status.success(),
        "oathtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn matches_oathtool_on_1000_random_secrets() {
    #[allow(clippy::disallowed_methods)]
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let (mut totps, mut hotps) = (0, 0);
    for i in 0..1000 {
        let len = 10 + rng.below(55) as usize;
        let key: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let secret = Secret::from_bytes(key);
        // oathtool prints 6, 7 or 8 digits.
        let digits = 6 + rng.below(3) as u32;
        let (alg, name) = [
            (Algorithm::Sha1, "sha1"),
            (Algorithm::Sha256, "sha256"),
            (Algorithm::Sha512, "sha512"),
        ][rng.below(3) as usize];
        // Alternate hex and base32 input to oathtool, so both of our encoders are checked too.
        let (key_args, key_text) = if i % 2 == 0 {
            (vec![], secret.to_hex().to_string())
        } else {
            (vec!["--base32".to_string()], secret.to_base32().to_string())
        };
        if rng.below(2) == 0 {
            let period = [15u32, 30, 60, 90][rng.below(4) as usize];
            let time = rng.below(4_000_000_000) as i64;
            let mut args = key_args.clone();
            args.extend([
                format!("--totp={name}"),
                format!("--digits={digits}"),
                format!("--time-step-size={period}s"),
                format!("--now=@{time}"),
                key_text,
            ]);
            assert_eq!(
                totp(&secret, time, period, digits, alg).as_str(),
                oathtool(&args),
                "seed {seed} case {i}: {args:?}"
            );
            totps += 1;
        } else {
            // oathtool's HOTP is SHA1 only.
            let counter = rng.next() >> rng.below(64);
            let mut args = key_args.clone();
            args.extend([format!("--digits={digits}"), format!("--counter={counter}"), key_text]);
            assert_eq!(
                hotp(&secret, counter, digits, Algorithm::Sha1).as_str(),
                oathtool(&args),
                "seed {seed} case {i}: {args:?}"
            );
            hotps += 1;
        }
    }
    assert!(
        totps > 300 && hotps > 300,
        "both kinds were exercised: {totps} totp, {hotps} hotp"
    );
}
