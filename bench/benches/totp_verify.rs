//! TOTP verification with a ±1 step window, worst case (a wrong code: every step computed).
//! `bench/run.sh` runs liboath's `oath_totp_validate` on the same input for the ratio.

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_otp::{Algorithm, Hotp, Secret, Window, hotp, oath_matcher, totp_step, verify_time};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
    let now = 1_700_000_000i64;
    let step = totp_step(now, 30);
    c.bench_function("totp_verify_window1_wrong_code", |b| {
        // What the gate does per attempt: key the HMAC once, then try each step.
        b.iter(|| {
            let generator = Hotp::new(&secret, Algorithm::Sha1, 6);
            verify_time(
                step,
                step,
                Window::symmetric(1),
                None,
                oath_matcher(&generator, black_box("000000")),
            )
        })
    });
    c.bench_function("hotp_one_code", |b| {
        b.iter(|| hotp(&secret, black_box(step), 6, Algorithm::Sha1))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
