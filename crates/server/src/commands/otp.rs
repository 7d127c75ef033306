//! `otp code|uri|secret` and `qr`: OTP tools that need no store.

use crate::cli::{OtpCommand, OtpType, SecretArgs};
use anyhow::{Context, Result, bail};
use portcullis_core::{Clock, SystemClock};
use portcullis_otp::{Algorithm, KeyUri, OtpKind, Secret};
use std::path::Path;
use std::process::ExitCode;

fn secret(args: &SecretArgs) -> Result<Secret> {
    let text = args
        .source
        .read()?
        .context("give the secret with --secret-stdin, --secret-file PATH or --secret")?;
    if args.hex {
        Secret::from_hex(&text).context("--secret (hex)")
    } else {
        Secret::from_base32(&text).context("--secret (base32; pass --hex for hex)")
    }
}

fn algorithm(a: &str) -> Result<Algorithm> {
    Algorithm::parse(a).with_context(|| format!("--algorithm {a}: use sha1, sha256 or sha512"))
}

/// Runs an `otp` subcommand.
pub fn run(cmd: OtpCommand) -> Result<ExitCode> {
    match cmd {
        OtpCommand::Code {
            secret: s,
            kind,
            time,
            counter,
            digits,
            period,
            algorithm: a,
            pin,
            pin_file,
        } => {
            let key = secret(&s)?;
            let pin = match super::secret_from("pin", None, false, pin_file.as_deref())? {
                Some(p) => p,
                None => zeroize::Zeroizing::new(pin),
            };
            let alg = algorithm(&a)?;
            let max = if kind == OtpType::Motp { 32 } else { 10 };
            if !(1..=max).contains(&digits) {
                bail!("--digits {digits}: use 1 to {max}");
            }
            let now = time.unwrap_or_else(|| SystemClock.now());
            let code = match kind {
                OtpType::Totp => {
                    let p = period.unwrap_or(30);
                    if p == 0 {
                        bail!("--period 0: use at least 1 second");
                    }
                    portcullis_otp::totp(&key, now, p, digits, alg)
                }
                OtpType::Hotp => {
                    let c = counter.context("--type hotp needs --counter N")?;
                    portcullis_otp::hotp(&key, c, digits, alg)
                }
                OtpType::Motp => {
                    let c = match counter {
                        Some(c) => c,
                        None => portcullis_otp::totp_step(now, period.unwrap_or(10).max(1)),
                    };
                    portcullis_otp::motp(&key, &pin, c, digits)
                }
            };
            println!("{}", code.as_str());
        }
        OtpCommand::Uri {
            secret: s,
            account,
            issuer,
            kind,
            digits,
            period,
            counter,
            algorithm: a,
        } => {
            let kind = match kind {
                OtpType::Totp => OtpKind::Totp,
                OtpType::Hotp => OtpKind::Hotp,
                OtpType::Motp => bail!("mOTP tokens have no otpauth:// URI"),
            };
            let uri = KeyUri {
                kind,
                account,
                issuer,
                secret: secret(&s)?,
                algorithm: algorithm(&a)?,
                digits,
                period,
                counter,
            }
            .to_uri();
            // Parse our own output: refuses digits/period outside what apps accept.
            KeyUri::parse(&uri).context("these options do not make a valid otpauth URI")?;
            println!("{}", uri.as_str());
        }
        OtpCommand::Secret { secret: s } => {
            let key = secret(&s)?;
            println!("hex:    {}", key.to_hex().as_str());
            println!("base32: {}", key.to_base32().as_str());
            println!("bytes:  {}", key.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `qr URI [--png F] [--svg F]`: checks the URI, then draws it.
pub fn qr(uri: &str, png: Option<&Path>, svg: Option<&Path>) -> Result<ExitCode> {
    // `-`: the URI (and its secret) comes on standard input, not on the command line.
    let from_stdin = if uri == "-" {
        Some(super::secret_from("uri", None, true, None)?.context("no URI on standard input")?)
    } else {
        None
    };
    let uri = from_stdin.as_ref().map_or(uri, |u| u.as_str());
    KeyUri::parse(uri).context("not a usable otpauth:// URI")?;
    println!("{}", crate::qr::terminal(uri)?);
    if let Some(p) = png {
        crate::qr::png(uri, p, 8)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = svg {
        crate::qr::svg(uri, p)?;
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
