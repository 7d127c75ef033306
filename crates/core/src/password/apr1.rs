//! Apache's `$apr1$` MD5-crypt, the default of `htpasswd -m`. No maintained crate on the
//! current RustCrypto digest release implements it, and it is short.

use md5::{Digest, Md5};

const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn to64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(ITOA64[(v & 0x3f) as usize] as char);
        v >>= 6;
    }
}

/// The full `$apr1$salt$hash` string for `password` and `salt` (at most 8 characters used).
pub fn hash(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let magic = b"$apr1$";
    let alt = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new().chain_update(password).chain_update(magic).chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let f = |a: usize, b: usize, c: usize| (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]);
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    to64(&mut out, f(0, 6, 12), 4);
    to64(&mut out, f(1, 7, 13), 4);
    to64(&mut out, f(2, 8, 14), 4);
    to64(&mut out, f(3, 9, 15), 4);
    to64(&mut out, f(4, 10, 5), 4);
    to64(&mut out, u32::from(fin[11]), 2);
    out
}
