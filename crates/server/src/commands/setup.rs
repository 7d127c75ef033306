//! `init`, `demo`: a working configuration and store in one step.

use super::Context_;
use anyhow::{Context, Result, bail};
use portcullis_core::model::{FirstFactor, User};
use portcullis_core::{Clock, SystemClock, password};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

/// The configuration `init` writes: every key with its default and what it does.
pub const TEMPLATE: &str = r#"# portcullis configuration. Every key is optional; the values shown are the defaults.
# Relative paths are relative to this file's directory.

[store]
# sqlite (embedded, default) | mod_authn_otp | pam_oath (a live users file of that tool)
backend = "sqlite"
path = "portcullis.db"

[otp]
issuer = "portcullis"      # shown in authenticator apps
kind = "totp"              # totp | hotp, for new tokens
digits = 6                 # 6-10
period = 30                # TOTP step, seconds
algorithm = "sha1"         # sha1 | sha256 | sha512 (most apps only do sha1)
window = 1                 # TOTP: steps accepted either side of now (clock skew)
hotp_look_ahead = 10       # HOTP: counters a code may be ahead
motp_window = 18           # mOTP: 10 s steps either side (3 minutes)
linger = 0                 # seconds an accepted code may be resent from the same IP (HTTP Basic)

[lockout]
max_failures = 5           # consecutive wrong codes before `user unlock` is needed; 0 = never

[first_factor]
# For users whose password is checked elsewhere (`user add --external-password`, PIN "+"):
# htpasswd = "/etc/apache2/.htpasswd"
# htdigest = "/etc/apache2/.htdigest"
# htdigest_realm = "private"
"#;

fn write_new(path: &Path, text: &str, force: bool) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() {
            format!("{} exists; pass --force to overwrite it", path.display())
        } else {
            format!("{}: cannot create", path.display())
        }
    })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Creates `dir` (0700) with a portcullis.toml (0600) and an empty store.
pub fn init(dir: &Path, force: bool) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        eprintln!(
            "warning: {} is accessible to other users (mode {:o}); `chmod 700` it so only portcullis reads its secrets",
            dir.display(),
            mode & 0o777
        );
    }
    let config = dir.join("portcullis.toml");
    write_new(&config, TEMPLATE, force)?;
    let ctx = Context_::load(&config)?;
    println!(
        "wrote {} and {}",
        config.display(),
        ctx.config.resolve(&ctx.config.store.path).display()
    );
    println!("next: portcullis --config {} user add NAME", config.display());
    Ok(())
}

/// Sets up (or reuses) a demo directory with user `demo` / password `demo`, and shows how
/// to log in: the QR code, the URI and the current code.
pub fn demo(dir: &Path) -> Result<ExitCode> {
    let config = dir.join("portcullis.toml");
    if !config.exists() {
        init(dir, false)?;
    }
    let ctx = Context_::load(&config)?;
    let existing = ctx.store.user("demo")?;
    let user = match existing {
        Some(u) => u,
        None => {
            let mut u = User::new("demo", FirstFactor::Hash(password::hash_password("demo")?));
            u.display_name = Some("Demo User".into());
            u.groups = vec!["demo".into()];
            u.tokens
                .push(super::users::new_token(&ctx.config, &Default::default())?);
            ctx.store.create(&u)?;
            u
        }
    };
    let Some(token) = user.tokens.first() else {
        bail!(
            "the demo user has no token; run `portcullis --config {} user token reset demo`",
            config.display()
        );
    };
    let uri = token
        .key_uri("demo", &ctx.config.otp.issuer)
        .context("the demo token has no otpauth URI")?
        .to_uri();
    println!("{}", crate::qr::terminal(&uri)?);
    println!("Demo user: demo   password: demo");
    println!(
        "Scan the QR code above with an authenticator app, or use this URI:\n  {}",
        uri.as_str()
    );
    if let Some(p) = match token.step {
        portcullis_core::Step::Time(p) => Some(p),
        portcullis_core::Step::Event => None,
    } {
        let now = SystemClock.now();
        let code = portcullis_otp::totp(&token.secret, now, p, token.digits, token.algorithm);
        println!(
            "Current code: {} (valid for {} s)",
            code.as_str(),
            p as i64 - now.rem_euclid(p as i64)
        );
    }
    println!(
        "Try it:\n  printf 'demo\\n' | portcullis --config {} verify demo --password-stdin CODE",
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}
