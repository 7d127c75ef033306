//! `init`, `demo`: a working configuration and store in one step.

use super::Context_;
use anyhow::{Context, Result, bail};
use portcullis_core::model::{FirstFactor, User};
use portcullis_core::{Clock, Step, SystemClock, password};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

/// The configuration `init` writes: every key with its default and what it does.
pub const TEMPLATE: &str = r#"# portcullis configuration. Every key is optional; the values shown are the defaults.
# Relative paths are relative to this file's directory. Check it with `portcullis config check`.

[store]
# sqlite (embedded, default) | postgres (many gateways) | mod_authn_otp | pam_oath (a live users file of that tool)
backend = "sqlite"
path = "portcullis.db"
# PostgreSQL (backend = "postgres"): no password in the URL; TLS checked against ca_file.
# url = "postgres://portcullis@db.example.com:5432/portcullis"
# password_file = "/etc/portcullis/pg.pass"
# sslmode = "verify-full"   # verify-full | disable (a Unix socket or loopback only)
# ca_file = "/etc/ssl/certs/ca-certificates.crt"
# pool_size = 8
# timeout = 5               # seconds; past it the request is refused (503)

[state]
# Sessions, regulation counts and bans, enrollment links: local (the SQLite store's tables,
# or this process's memory beside another store) | redis (shared by every gateway)
backend = "local"
# url = "rediss://cache.example.com:6380/0"   # redis://, rediss:// (TLS) or unix:///path
# username = "portcullis"                     # Redis 6+ ACL user
# password_file = "/etc/portcullis/redis.pass"
# ca_file = "/etc/portcullis/redis-ca.pem"    # default: the system's roots
# key_prefix = "portcullis:"
# timeout = 5
# master_name = "mymaster"                    # Redis Sentinel, in place of url:
# sentinels = ["10.0.0.1:26379", "10.0.0.2:26379"]

[pam]
# pam_portcullis.so asks the gateway here (needed with a PostgreSQL store or Redis state):
# socket = "/run/portcullis/pam.sock"

[otp]
issuer = "portcullis"      # shown in authenticator apps
kind = "totp"              # totp | hotp, for new tokens
digits = 6                 # 6-10
period = 30                # TOTP step, seconds
algorithm = "sha1"         # sha1 | sha256 | sha512 (most apps only do sha1)
window = 1                 # TOTP: steps accepted either side of now (clock skew)
hotp_look_ahead = 10       # HOTP: counters a code may be ahead
motp_window = 18           # mOTP: 10 s steps either side (3 minutes)
linger = 300               # HTTP Basic: seconds the last code may be resent from the same IP

[lockout]
max_failures = 5           # consecutive wrong codes before `user unlock` is needed; 0 = never (required with pam_oath)

[first_factor]
# For users whose password is checked elsewhere (`user add --external-password`, PIN "+"):
# htpasswd = "/etc/apache2/.htpasswd"
# htdigest = "/etc/apache2/.htdigest"
# htdigest_realm = "private"

[ldap]
# Passwords, groups, names and mail from an LDAP server (`user add NAME --ldap`):
# url = "ldaps://ldap.example.com"            # several, space-separated: tried in turn
# start_tls = false                           # with ldap:// URLs
# ca_file = "/etc/portcullis/ldap-ca.pem"     # default: the system's roots
# bind_dn = "cn=portcullis,ou=services,dc=example,dc=com"
# bind_password_file = "/etc/portcullis/ldap.pass"
# base_dn = "ou=people,dc=example,dc=com"
# group_base_dn = "ou=groups,dc=example,dc=com"
# implementation = "openldap"                 # openldap | activedirectory | freeipa | lldap
# user_filter = "(&(objectClass=person)(|(uid={input})(mail={input})))"
# username_attribute = "uid"
# group_filter = "(&(objectClass=groupOfNames)(member={dn}))"   # or member_of_attribute = "memberOf"
# group_name_attribute = "cn"
# display_name_attribute = "displayName"
# mail_attribute = "mail"
# token_attribute = "portcullisOTP"           # tokens kept in the directory (read only)
# auto_enroll = false                         # members of auto_enroll_groups enroll at first login
# auto_enroll_groups = ["staff"]
# timeout = 5
# pool_size = 4

# [duo]
# Duo push (and Duo passcodes) as a second factor (`user add NAME --duo`): uncomment the
# section with the keys of a Duo "Auth API" application:
# api_host = "api-XXXXXXXX.duosecurity.com"
# integration_key = "DIXXXXXXXXXXXXXXXXXX"
# secret_key_file = "/etc/portcullis/duo.skey"   # mode 0600, the secret key on its first line
# failmode = "closed"                            # closed: Duo unreachable = no login | open: skip the push (logged at WARN)
# username = "{user}"                            # the Duo name of a portcullis user, e.g. "{user}@example.com"
# push_info = true                               # show this host and the client's address in the push
# timeout = 60                                   # seconds a person has to approve
# ca_file = "/etc/portcullis/duo-ca.pem"         # an extra CA to trust (system roots otherwise)

# [webauthn]
# Passkeys and security keys on the portal (on by default; off while portal_url is an IP address):
# enabled = true
# rp_id = ""                      # default: [session] domain, else portal_url's host
# rp_name = "portcullis"
# user_verification = "preferred" # preferred | required
# attestation = "none"            # or a list of allowed AAGUIDs, with attestation_ca_file
# passwordless = false            # "Sign in with a passkey" on the first page
# timeout = 120

[server]
listen = "127.0.0.1:9091"
portal_url = "http://127.0.0.1:9091"          # the portal's external URL (https:// in production); its path, if any, prefixes every gateway route
default_redirect = "http://127.0.0.1:9091/"   # where people land when the return URL is missing or refused
trusted_proxies = ["127.0.0.1/32", "::1/128"] # whose X-Forwarded-*/X-Real-IP/X-Original-URL headers count
two_step = true            # password page, then code page; false = one page with both
log_format = "text"        # text | json
demo_page = false          # serve a protected demo page at /
max_connections = 1000     # client connections at once; more are closed at accept
header_timeout = 10        # seconds to send a request's headers (and to start the next one on a kept-alive connection)
metrics_listen = ""        # Prometheus /metrics on its own listener, e.g. "127.0.0.1:9093"; never on the portal
# HTTPS in portcullis itself (PEM files, read again when they change, e.g. after certbot):
# tls_cert = "/etc/letsencrypt/live/app.example.com/fullchain.pem"
# tls_key = "/etc/letsencrypt/live/app.example.com/privkey.pem"

[session]
cookie_name = "portcullis_session"
domain = ""                # e.g. "example.com" for single sign-on across its subdomains
secure = true              # HTTPS-only cookie; false is refused unless listening on loopback
absolute = 43200           # seconds (12 h)
idle = 1800                # seconds (30 min), refreshed by use
bind_ip = false            # end the session when the client address changes
refresh = 60               # seconds between re-reading a signed-in user: lock, removal and group changes reach live sessions (and Basic linger) within this; 0 = every request
store = "sqlite"           # sqlite (survives restarts) | memory

[access]
default_policy = "two_factor"                  # bypass | deny | one_factor | two_factor
protected_domains = ["127.0.0.1", "localhost"] # hosts a login may return to; "*.example.com" allowed
# Ordered rules, first match wins. Every key is optional; lists may be a single string.
# [[access.rules]]
# domain = ["*.example.com"]
# path = ["^/static/", "^/favicon.ico$"]
# policy = "bypass"
# [[access.rules]]
# networks = ["192.168.1.0/24"]
# policy = "one_factor"        # the LAN skips the second factor
# [[access.rules]]
# domain = "admin.example.com"
# groups = ["admins"]
# policy = "two_factor"
# [[access.rules]]
# domain = "admin.example.com"
# policy = "deny"

[regulation]
max_retries = 5            # failures per user or per client address within find_time...
find_time = 600
ban_time = 900             # ...ban it for this long (seconds); 0 retries = off

[basic]
enabled = true             # HTTP Basic with password+code on the forward-auth endpoints
realm = "portcullis"

[invite]
ttl = 86400                # seconds an enrollment link stays valid

[apache]
fastcgi_listen = ""        # e.g. "127.0.0.1:9092": FastCGI authorizer for mod_authnz_fcgi; "" = off
check_socket = ""          # e.g. "/run/portcullis/check.sock": served for `portcullis check`; "" = off
check_socket_group = ""    # e.g. "www-data": the socket's group, set at every start
check_socket_mode = 0o660  # the socket's permissions
check_fallback = "refuse"  # socket set but no gateway answering: refuse | local (decide from the store, logged)

[proxy]
# Reverse-proxy mode: forward allowed requests to this app ("http://127.0.0.1:8080"); the
# portal then lives under portal_url's path on the app's host (".../.portcullis"). "" = off
upstream = ""
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

/// `text` with the value of the first `key = value` line replaced (its comment kept).
fn with_value(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut done = false;
    text.lines()
        .map(|line| {
            if done || !line.starts_with(&prefix) {
                return line.to_string();
            }
            done = true;
            match line.find(" #") {
                Some(at) => {
                    let width = at - prefix.len();
                    format!("{prefix}{value:width$}{}", &line[at..])
                }
                None => format!("{prefix}{value}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A TOML string for a value given on the command line (refused if it needs escapes).
fn toml_string(option: &str, value: &str) -> Result<String> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\' || c.is_whitespace())
    {
        bail!("--{option} {value:?}: give it without spaces, quotes or backslashes");
    }
    Ok(format!("\"{value}\""))
}

/// What `init` was told about the site.
#[derive(Debug, Default)]
pub struct Site<'a> {
    /// `--portal-url`.
    pub portal_url: Option<&'a str>,
    /// `--domain`.
    pub domain: Option<&'a str>,
    /// `--listen`.
    pub listen: Option<&'a str>,
}

/// The template with `--portal-url`, `--domain` and `--listen` filled in.
fn init_config(site: &Site<'_>) -> Result<String> {
    let (portal_url, domain) = (site.portal_url, site.domain);
    let mut text = TEMPLATE.to_string();
    if let Some(listen) = site.listen {
        text = with_value(&text, "listen", &toml_string("listen", listen)?);
    }
    if let Some(url) = portal_url {
        let url = url.trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .with_context(|| {
                format!("--portal-url {url:?}: give an http:// or https:// URL such as https://auth.example.com")
            })?
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if host.is_empty() {
            bail!("--portal-url {url:?}: the URL has no host");
        }
        text = with_value(&text, "portal_url", &toml_string("portal-url", url)?);
        text = with_value(
            &text,
            "default_redirect",
            &toml_string("portal-url", &format!("{url}/"))?,
        );
        if domain.is_none() {
            text = with_value(
                &text,
                "protected_domains",
                &format!("[{}]", toml_string("portal-url", host)?),
            );
        }
        if url.starts_with("http://") {
            text = text.replace(
                "secure = true              # HTTPS-only cookie",
                "secure = false             # portal_url is plain HTTP (loopback only); HTTPS-only cookie",
            );
        }
    }
    if let Some(domain) = domain {
        let domain = domain.trim_start_matches("*.").trim_matches('.');
        let quoted = toml_string("domain", domain)?;
        text = with_value(
            &text,
            "protected_domains",
            &format!("[{quoted}, {}]", toml_string("domain", &format!("*.{domain}"))?),
        );
        text = with_value(&text, "domain", &quoted);
    }
    Ok(text)
}

/// Creates `dir` (0700) with a portcullis.toml (0600) and an empty store.
pub fn init(dir: &Path, force: bool, site: &Site<'_>) -> Result<()> {
    let text = init_config(site)?;
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
    write_new(&config, &text, force)?;
    let ctx = match Context_::load(&config) {
        Ok(ctx) => ctx,
        Err(e) => {
            // A config `init` wrote must load; if the options made it invalid, take it back.
            let _ = std::fs::remove_file(&config);
            return Err(e);
        }
    };
    println!(
        "wrote {} and {}",
        config.display(),
        ctx.config.core.resolve(&ctx.config.core.store.path).display()
    );
    let flag = if config == Path::new(crate::cli::DEFAULT_CONFIG) {
        String::new()
    } else {
        format!("--config {} ", config.display())
    };
    println!(
        "portal: {} (check the file with `portcullis {flag}config check`)",
        ctx.config.server.portal_url
    );
    println!("next: portcullis {flag}user add NAME");
    Ok(())
}

/// The demo's configuration: the template with a plain-HTTP loopback portal and a
/// protected demo page.
fn demo_config() -> String {
    TEMPLATE.replace("demo_page = false ", "demo_page = true  ").replace(
        "secure = true              # HTTPS-only cookie",
        "secure = false             # demo only: plain HTTP on loopback; HTTPS-only cookie",
    )
}

/// Sets up (or reuses) a demo directory with user `demo` / password `demo`, shows its QR
/// code and current code, then runs the gateway with a protected demo page.
pub fn demo(dir: &Path, listen: &str, serve: bool) -> Result<ExitCode> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?}: give an address and port such as 127.0.0.1:9091"))?;
    if !addr.ip().is_loopback() {
        bail!("--listen {listen}: the demo serves plain HTTP, so only on loopback (127.0.0.1 or ::1)");
    }
    // Before anything is printed: a busy port must not follow an "Open http://..." line.
    let held = if serve {
        Some(std::net::TcpListener::bind(addr).with_context(|| {
            format!("{listen} is in use (another demo or gateway?): stop it, or pass --listen 127.0.0.1:PORT")
        })?)
    } else {
        None
    };
    let config = dir.join("portcullis.toml");
    if !config.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
        write_new(&config, &demo_config(), false)?;
    }
    // The demo's address follows --listen, also in a directory made by an earlier run.
    let url = format!("http://{addr}");
    let text = std::fs::read_to_string(&config).with_context(|| format!("{}: cannot read", config.display()))?;
    let moved = with_value(
        &with_value(
            &with_value(&text, "listen", &format!("\"{addr}\"")),
            "portal_url",
            &format!("\"{url}\""),
        ),
        "default_redirect",
        &format!("\"{url}/\""),
    );
    if moved != text {
        std::fs::write(&config, moved).with_context(|| format!("{}: cannot write", config.display()))?;
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
                .push(super::users::new_token(&ctx.config.core, &Default::default())?);
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
        .key_uri("demo", &ctx.config.core.otp.issuer)
        .context("the demo token has no otpauth URI")?
        .to_uri();
    println!("{}", crate::qr::terminal(&uri)?);
    println!(
        "Scan the QR code above with an authenticator app, or add this URI:\n  {}",
        uri.as_str()
    );
    if let Step::Time(p) = token.step {
        let now = SystemClock.now();
        let code = portcullis_otp::totp(&token.secret, now, p, token.digits, token.algorithm);
        println!(
            "Current code: {} (valid for {} s more)",
            code.as_str(),
            p as i64 - now.rem_euclid(p as i64)
        );
    }
    println!(
        "Print a code any time:  portcullis otp code --secret {}",
        token.secret.to_base32().as_str()
    );
    let portal = ctx.config.server.portal_url.clone();
    drop(ctx);
    if !serve {
        println!(
            "Try it:\n  printf 'demo\\n' | portcullis --config {} verify demo --password-stdin CODE",
            config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let c = crate::settings::Settings::load(&config)?;
    drop(held);
    println!("\nOpen {portal}/ and sign in as demo / demo with the current code. Ctrl-C stops the demo.");
    crate::gateway::serve(c, None).map(|_| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_options_fill_in_the_keys_a_site_must_change() {
        let site = |portal_url, domain| Site {
            portal_url,
            domain,
            listen: None,
        };
        let text = init_config(&site(Some("https://auth.example.com/"), Some("example.com"))).unwrap();
        assert!(text.contains("portal_url = \"https://auth.example.com\" "), "{text}");
        assert!(
            text.contains("default_redirect = \"https://auth.example.com/\" "),
            "{text}"
        );
        assert!(
            text.contains("protected_domains = [\"example.com\", \"*.example.com\"] #"),
            "{text}"
        );
        assert!(text.contains("\ndomain = \"example.com\" "), "{text}");
        assert!(text.contains("secure = true "), "{text}");
        let plain = init_config(&site(Some("http://127.0.0.1:9091"), None)).unwrap();
        assert!(plain.contains("secure = false "), "{plain}");
        assert!(plain.contains("protected_domains = [\"127.0.0.1\"]"), "{plain}");
        assert!(init_config(&site(Some("auth.example.com"), None)).is_err());
        assert!(init_config(&site(None, Some("exa mple.com"))).is_err());
        assert_eq!(init_config(&Site::default()).unwrap(), TEMPLATE);
        let moved = init_config(&Site {
            listen: Some("127.0.0.1:7000"),
            ..Site::default()
        })
        .unwrap();
        assert!(moved.contains("\nlisten = \"127.0.0.1:7000\"\n"), "{moved}");
    }
}
