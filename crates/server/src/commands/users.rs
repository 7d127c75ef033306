//! `user ...`: add, list, show, remove, lock, unlock, passwd, scratch, token reset.

use super::{Context_, new_password, plural};
use crate::cli::{AppPasswordCommand, FactorCommand, FactorKind, TokenArgs, TokenCommand, UserCommand};
use anyhow::{Context, Result, bail};
use portcullis_core::config::{Config, DefaultKind};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User, valid_user_name};
use portcullis_core::session::UserChange;
use portcullis_core::{StoreError, password, random, scratch};
use portcullis_otp::{Algorithm, Secret};
use std::path::Path;
use std::process::ExitCode;

/// A new token from the command-line options, falling back to the `[otp]` defaults.
pub fn new_token(config: &Config, args: &TokenArgs) -> Result<Token> {
    let o = &config.otp;
    let hotp = args.hotp || (!args.totp && o.kind == DefaultKind::Hotp);
    let digits = args.digits.unwrap_or(o.digits);
    if !(6..=10).contains(&digits) {
        bail!("--digits {digits}: use 6 to 10");
    }
    let period = args.period.unwrap_or(o.period);
    if !(1..=3600).contains(&period) {
        bail!("--period {period}: use 1 to 3600 seconds");
    }
    let algorithm = match &args.algorithm {
        Some(a) => Algorithm::parse(a).with_context(|| format!("--algorithm {a}: use sha1, sha256 or sha512"))?,
        None => o.algorithm,
    };
    let step = if hotp { Step::Event } else { Step::Time(period) };
    let given = args.secret.read()?;
    let secret = match &given {
        Some(s) => {
            let secret = Secret::from_base32(s).context("--secret")?;
            let len = secret.as_bytes().len();
            if len < portcullis_core::model::MIN_SECRET_BYTES && !args.short_secret {
                bail!(
                    "--secret is {}; RFC 4226 asks for at least {} (128 bits), and short keys are guessable offline from a few codes. Use the token's full key, or pass --short-secret if the hardware token really has a shorter one",
                    plural(len, "byte", "bytes"),
                    portcullis_core::model::MIN_SECRET_BYTES
                );
            }
            secret
        }
        None => return Ok(Token::generate(step, algorithm, digits)),
    };
    Ok(Token::new(TokenKind::Oath, step, secret, algorithm, digits))
}

fn show_enrollment(config: &Config, name: &str, token: &Token, args: &TokenArgs) -> Result<()> {
    let Some(key) = token.key_uri(name, &config.otp.issuer) else {
        return Ok(());
    };
    let uri = key.to_uri();
    if !args.no_terminal_qr {
        println!("{}", crate::qr::terminal(&uri)?);
    }
    println!("{}", uri.as_str());
    if let Some(p) = &args.qr {
        crate::qr::png(&uri, p, 8)?;
        println!("QR code written to {}", p.display());
    }
    if let Some(p) = &args.svg {
        crate::qr::svg(&uri, p)?;
        println!("QR code written to {}", p.display());
    }
    println!("Shown once: scan it now, then confirm with `portcullis verify {name} CODE`.");
    Ok(())
}

/// A number of seconds in whole hours, minutes or seconds: `24 hours`, `1 minute`, `90 seconds`.
fn duration_words(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => plural(s / 3600, "hour", "hours"),
        s if s >= 60 && s % 60 == 0 => plural(s / 60, "minute", "minutes"),
        s => plural(s, "second", "seconds"),
    }
}

/// The [ldap] server's name for the person `typed` names (uid, e-mail, another case).
fn ldap_name(ctx: &Context_, config_path: &Path, typed: &str) -> Result<String> {
    if !ctx.config.core.ldap.is_set() {
        bail!(
            "--ldap needs an [ldap] section with url and base_dn in {}",
            config_path.display()
        );
    }
    let source = portcullis_store::first_factor_source(&ctx.config.core)?
        .context("[ldap] is set but no LDAP source was opened")?;
    match source.canonical(typed)? {
        Some(name) => Ok(name),
        None => bail!(
            "no one (or more than one) in LDAP is found as {typed:?} by [ldap] user_filter under base_dn; check the name, or the filter with ldapsearch"
        ),
    }
}

fn require(found: bool, name: &str) -> Result<()> {
    if !found {
        return Err(StoreError::NotFound(name.to_string()).into());
    }
    Ok(())
}

/// Runs a `user` subcommand.
pub fn run(config_path: &Path, cmd: UserCommand) -> Result<ExitCode> {
    let ctx = Context_::load(config_path)?;
    let store = ctx.store.as_ref();
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
            no_password,
            external_password,
            ldap,
            groups,
            display_name,
            email,
            no_token,
            duo,
            token,
        } => {
            let name = if ldap {
                ldap_name(&ctx, config_path, &name)?
            } else {
                name
            };
            valid_user_name(&name).map_err(|e| anyhow::anyhow!("user name {name:?}: {e}"))?;
            if password_stdin && token.secret.secret_stdin {
                bail!(
                    "--password-stdin and --secret-stdin both want standard input: give the secret with --secret-file PATH"
                );
            }
            if store.user(&name)?.is_some() {
                return Err(StoreError::Exists(name).into());
            }
            let first_factor = if no_password {
                FirstFactor::None
            } else if ldap {
                FirstFactor::External
            } else if external_password {
                if ctx.config.core.external_source().is_none() {
                    bail!(
                        "--external-password needs [first_factor] htpasswd or htdigest in {} (for an LDAP server: --ldap)",
                        config_path.display()
                    );
                }
                FirstFactor::External
            } else {
                FirstFactor::Hash(password::hash_password(&new_password(password_stdin)?)?)
            };
            let mut user = User::new(&name, first_factor);
            user.groups = groups;
            user.display_name = display_name;
            user.email = email;
            if duo {
                warn_without_duo(&ctx.config.core, config_path);
                user.duo = true;
                store.create(&user)?;
                println!("added user {name}: logins are approved with a Duo push");
                return Ok(ExitCode::SUCCESS);
            }
            if no_token {
                store.create(&user)?;
                println!("added user {name} without a token; send them `portcullis user invite {name}`");
                return Ok(ExitCode::SUCCESS);
            }
            let t = new_token(&ctx.config.core, &token)?;
            user.tokens.push(t.clone());
            store.create(&user)?;
            println!("added user {name}: {}", t.describe());
            show_enrollment(&ctx.config.core, &name, &t, &token)?;
        }
        UserCommand::List => {
            println!("{:<20} {:<34} {:>8}  STATE", "USER", "TOKENS", "FAILURES");
            for u in store.users()? {
                let tokens: Vec<String> = u.tokens.iter().map(Token::describe).collect();
                let locked = u.locked
                    || (ctx.config.core.lockout.max_failures > 0 && u.failures >= ctx.config.core.lockout.max_failures);
                println!(
                    "{:<20} {:<34} {:>8}  {}",
                    u.name,
                    if tokens.is_empty() {
                        "-".to_string()
                    } else {
                        tokens.join("; ")
                    },
                    u.failures,
                    if locked { "locked" } else { "active" }
                );
            }
        }
        UserCommand::Show { name } => {
            let u = store.user(&name)?.ok_or_else(|| StoreError::NotFound(name.clone()))?;
            println!("user:         {}", u.name);
            println!(
                "first factor: {}",
                match u.first_factor {
                    FirstFactor::None => "none",
                    FirstFactor::Hash(_) => "password (argon2id)",
                    FirstFactor::Pin(_) => "PIN in users file",
                    FirstFactor::External => "external (htpasswd/htdigest)",
                }
            );
            println!("groups:       {}", u.groups.join(", "));
            if let Some(d) = &u.display_name {
                println!("name:         {d}");
            }
            if let Some(e) = &u.email {
                println!("email:        {e}");
            }
            if u.duo {
                println!(
                    "duo push:     yes (Duo user {:?})",
                    ctx.config.core.duo.duo_username(&u.name)
                );
            }
            for p in &u.passkeys {
                println!(
                    "passkey:      {:?}, added {}, {}{}{}",
                    p.label,
                    super::when(p.created),
                    p.last_used
                        .map_or_else(|| "never used".to_string(), |s| format!("last used {}", super::when(s))),
                    if p.discoverable { ", passwordless" } else { "" },
                    if p.backup_state { ", synced" } else { "" },
                );
            }
            for (i, t) in u.tokens.iter().enumerate() {
                println!(
                    "token {i}:      {}{}",
                    t.describe(),
                    t.last_used
                        .map(|s| format!(", last used {}", super::when(s)))
                        .unwrap_or_default()
                );
            }
            println!("scratch:      {} unused", u.scratch.len());
            println!(
                "failures:     {}{}",
                u.failures,
                if u.locked { " (locked by administrator)" } else { "" }
            );
        }
        UserCommand::Remove { name } => {
            require(store.remove(&name)?, &name)?;
            after_change(&ctx, &name, UserChange::Ends)?;
            println!("removed user {name}");
        }
        UserCommand::Lock { name } => {
            require(
                store.update(&name, &mut |u| {
                    u.locked = true;
                    true
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Ends)?;
            println!("locked user {name}");
        }
        UserCommand::Unlock { name } => {
            require(
                store.update(&name, &mut |u| {
                    u.locked = false;
                    u.failures = 0;
                    true
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Reread)?;
            println!("unlocked user {name}; failure count cleared");
        }
        UserCommand::Passwd { name, password_stdin } => {
            if store.user(&name)?.is_none() {
                return Err(StoreError::NotFound(name).into());
            }
            let hash = password::hash_password(&new_password(password_stdin)?)?;
            require(
                store.update(&name, &mut |u| {
                    u.first_factor = FirstFactor::Hash(hash.clone());
                    true
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Ends)?;
            println!("password changed for {name}");
        }
        UserCommand::Scratch { name } => {
            let (codes, hashes) = scratch::generate();
            require(
                store.update(&name, &mut |u| {
                    u.scratch = hashes.clone();
                    true
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Reread)?;
            println!("Recovery codes for {name} (each works once; shown only now; older ones no longer work):");
            for c in &codes {
                println!("  {}", c.as_str());
            }
        }
        UserCommand::Invite { name, passkey } => {
            if store.user(&name)?.is_none() {
                return Err(StoreError::NotFound(name).into());
            }
            if passkey && !ctx.config.core.webauthn.enabled {
                bail!(
                    "{}: [webauthn] enabled = false: turn passkeys on before sending a passkey link",
                    config_path.display()
                );
            }
            let stores = portcullis_store::open_all(&ctx.config.core)?;
            let Some(invites) = stores.invites else {
                bail!("invitations need [store] backend = \"sqlite\"");
            };
            let now = portcullis_core::Clock::now(&portcullis_core::SystemClock);
            let ttl = ctx.config.core.invite.ttl;
            let token = invites.create(&name, now + ttl as i64)?;
            let portal = ctx.config.server.portal_url.trim_end_matches('/');
            let kind = if passkey { "/passkey" } else { "" };
            println!("{portal}/enroll/{}{kind}", token.as_str());
            println!(
                "Valid for {}, once. Send it to {name} over a channel you trust.",
                duration_words(ttl)
            );
        }
        UserCommand::AppPassword(cmd) => {
            if let Some(name) = app_password(store, cmd)? {
                after_change(&ctx, &name, UserChange::Reread)?;
            }
        }
        UserCommand::Factor(cmd) => {
            let (name, on) = match cmd {
                FactorCommand::Add {
                    name,
                    factor: FactorKind::Duo,
                } => (name, true),
                FactorCommand::Remove {
                    name,
                    factor: FactorKind::Duo,
                    ..
                } => (name, false),
                FactorCommand::Add {
                    name,
                    factor: FactorKind::Passkey,
                } => {
                    bail!(
                        "a passkey is registered by its owner, in a browser: send {name} `portcullis user invite {name} --passkey`, \
                         or let them add one on the portal's /settings page after signing in"
                    );
                }
                FactorCommand::Remove {
                    name,
                    factor: FactorKind::Passkey,
                    label,
                } => {
                    let removed = remove_passkey(store, &name, label.as_deref())?;
                    after_change(&ctx, &name, UserChange::Reread)?;
                    println!("{name}: passkey {removed:?} removed");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if on {
                warn_without_duo(&ctx.config.core, config_path);
            }
            let mut was = false;
            require(
                store.update(&name, &mut |u| {
                    was = u.duo;
                    u.duo = on;
                    was != on
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Reread)?;
            println!(
                "{name}: Duo push {}",
                match (was, on) {
                    (false, true) => "added",
                    (true, false) => "removed",
                    (true, true) => "was already on",
                    (false, false) => "was not on",
                }
            );
        }
        UserCommand::Token(TokenCommand::Reset { name, token }) => {
            let t = new_token(&ctx.config.core, &token)?;
            require(
                store.update(&name, &mut |u| {
                    u.tokens = vec![t.clone()];
                    u.failures = 0;
                    true
                })?,
                &name,
            )?;
            after_change(&ctx, &name, UserChange::Reread)?;
            println!("new token for {name}: {}", t.describe());
            show_enrollment(&ctx.config.core, &name, &t, &token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `name`'s passkey `label` (the only one when no label is given); its label.
fn remove_passkey(store: &dyn portcullis_core::Directory, name: &str, label: Option<&str>) -> Result<String> {
    let u = store
        .user(name)?
        .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
    let labels: Vec<&str> = u.passkeys.iter().map(|p| p.label.as_str()).collect();
    let which = match (label, labels.as_slice()) {
        (_, []) => bail!("{name} has no passkey"),
        (None, [one]) => (*one).to_string(),
        (None, many) => bail!(
            "{name} has {} passkeys ({}); name the one to remove: `portcullis user factor remove {name} passkey LABEL`",
            many.len(),
            many.join(", ")
        ),
        (Some(l), all) if !all.contains(&l) => {
            bail!("{name} has no passkey {l:?}; the passkeys are: {}", all.join(", "))
        }
        (Some(l), _) => l.to_string(),
    };
    store.update(name, &mut |u| {
        u.passkeys.retain(|p| p.label != which);
        true
    })?;
    Ok(which)
}

/// Says so when `[duo]` is not configured: the user's logins will refuse until it is.
fn warn_without_duo(config: &Config, path: &Path) {
    if !config.duo.is_set() {
        eprintln!(
            "note: [duo] is not set in {}: logins that need a push are refused until api_host, integration_key and secret_key_file are",
            path.display()
        );
    }
}

/// `user app-password add|list|remove`; the user it changed, if any.
fn app_password(store: &dyn portcullis_core::Directory, cmd: AppPasswordCommand) -> Result<Option<String>> {
    use portcullis_core::model::AppPassword;
    let changed = match cmd {
        AppPasswordCommand::Add { name, label } => {
            if label.is_empty()
                || label.len() > 64
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("label {label:?}: use 1 to 64 letters, digits, - and _");
            }
            // 120 bits, in an alphabet that survives being typed into a phone.
            let secret = data_encoding::BASE32_NOPAD.encode(&random::bytes(15)).to_lowercase();
            let hash = password::hash_password(&secret)?;
            let now = portcullis_core::Clock::now(&portcullis_core::SystemClock);
            let mut duplicate = false;
            require(
                store.update(&name, &mut |u| {
                    duplicate = u.app_passwords.iter().any(|a| a.label == label);
                    if duplicate {
                        return false;
                    }
                    u.app_passwords.push(AppPassword {
                        label: label.clone(),
                        hash: hash.clone(),
                        created: now,
                    });
                    true
                })?,
                &name,
            )?;
            if duplicate {
                bail!("{name} already has an app password labelled {label:?}; remove it first");
            }
            println!("App password for {name} ({label}), shown once; use it as the whole Basic password:");
            println!("  {secret}");
            Some(name)
        }
        AppPasswordCommand::List { name } => {
            let u = store.user(&name)?.ok_or_else(|| StoreError::NotFound(name.clone()))?;
            for a in &u.app_passwords {
                println!("{:<24} created {}", a.label, super::when(a.created));
            }
            None
        }
        AppPasswordCommand::Remove { name, label } => {
            let mut found = false;
            require(
                store.update(&name, &mut |u| {
                    let before = u.app_passwords.len();
                    u.app_passwords.retain(|a| a.label != label);
                    found = u.app_passwords.len() != before;
                    found
                })?,
                &name,
            )?;
            if !found {
                bail!("{name} has no app password labelled {label:?}; see `user app-password list {name}`");
            }
            println!("revoked app password {label} of {name}");
            Some(name)
        }
    };
    Ok(changed)
}

/// Tells the session store what a change to `name` means ([`UserChange`]): with Redis
/// every gateway hears it at once; the SQLite store drops the sessions it keeps, and the
/// gateways on it notice within `[session] refresh`, when they read the user again.
fn after_change(ctx: &Context_, name: &str, change: UserChange) -> Result<()> {
    let stores = portcullis_store::open_all(&ctx.config.core)?;
    if let Some(sessions) = stores.sessions {
        change.announce(sessions.as_ref(), name)?;
    }
    Ok(())
}
