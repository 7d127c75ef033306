//! `portcullis config apache|nginx|caddy|traefik`: the shipped contrib/ snippets, with
//! this configuration's addresses and paths put in (the same files the tests use).

use crate::settings::Settings;
use anyhow::Result;
use std::path::Path;

/// Which web server to print snippets for.
#[derive(Debug, Clone, Copy)]
pub enum Flavor {
    /// Apache 2.4 (mod_authnz_fcgi, mod_authnz_external).
    Apache,
    /// nginx `auth_request`.
    Nginx,
    /// Caddy `forward_auth`.
    Caddy,
    /// Traefik `forwardAuth`.
    Traefik,
}

const APACHE: &[(&str, &str)] = &[
    (
        "portcullis-provider.conf",
        include_str!("../../../../contrib/apache/portcullis-provider.conf"),
    ),
    (
        "portcullis-protect.conf",
        include_str!("../../../../contrib/apache/portcullis-protect.conf"),
    ),
    (
        "portcullis-protect-basic.conf",
        include_str!("../../../../contrib/apache/portcullis-protect-basic.conf"),
    ),
    (
        "portcullis-protect-group.conf",
        include_str!("../../../../contrib/apache/portcullis-protect-group.conf"),
    ),
    (
        "portcullis-authz.conf",
        include_str!("../../../../contrib/apache/portcullis-authz.conf"),
    ),
    (
        "portcullis-protect-authz.conf",
        include_str!("../../../../contrib/apache/portcullis-protect-authz.conf"),
    ),
    (
        "portcullis-external.conf",
        include_str!("../../../../contrib/apache/portcullis-external.conf"),
    ),
    (
        "portcullis-protect-external.conf",
        include_str!("../../../../contrib/apache/portcullis-protect-external.conf"),
    ),
    (
        "portcullis-reverse-proxy.conf",
        include_str!("../../../../contrib/apache/portcullis-reverse-proxy.conf"),
    ),
    (
        "example-site.conf",
        include_str!("../../../../contrib/apache/example-site.conf"),
    ),
];

const NGINX: &[(&str, &str)] = &[
    (
        "portcullis-upstream.conf",
        include_str!("../../../../contrib/nginx/portcullis-upstream.conf"),
    ),
    (
        "portcullis-authrequest.conf",
        include_str!("../../../../contrib/nginx/portcullis-authrequest.conf"),
    ),
    (
        "portcullis-protect.conf",
        include_str!("../../../../contrib/nginx/portcullis-protect.conf"),
    ),
    (
        "portcullis-protect-basic.conf",
        include_str!("../../../../contrib/nginx/portcullis-protect-basic.conf"),
    ),
    (
        "example-site.conf",
        include_str!("../../../../contrib/nginx/example-site.conf"),
    ),
];

const CADDY: &[(&str, &str)] = &[
    (
        "portcullis.caddy",
        include_str!("../../../../contrib/caddy/portcullis.caddy"),
    ),
    (
        "Caddyfile.example",
        include_str!("../../../../contrib/caddy/Caddyfile.example"),
    ),
];

const TRAEFIK: &[(&str, &str)] = &[(
    "portcullis.yml",
    include_str!("../../../../contrib/traefik/portcullis.yml"),
)];

/// The snippets of `flavor` with the configured values substituted.
pub fn render(config: &Settings, config_path: &Path, flavor: Flavor) -> String {
    let files = match flavor {
        Flavor::Apache => APACHE,
        Flavor::Nginx => NGINX,
        Flavor::Caddy => CADDY,
        Flavor::Traefik => TRAEFIK,
    };
    let fcgi = if config.apache.fastcgi_listen.is_empty() {
        "127.0.0.1:9092"
    } else {
        config.apache.fastcgi_listen.as_str()
    };
    let exe =
        std::env::current_exe().map_or_else(|_| "/usr/local/bin/portcullis".to_string(), |p| p.display().to_string());
    let abs = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut out = String::new();
    if matches!(flavor, Flavor::Apache) && config.apache.fastcgi_listen.is_empty() {
        out.push_str("# NOTE: [apache] fastcgi_listen is empty: set it to \"127.0.0.1:9092\" for mod_authnz_fcgi.\n\n");
    }
    for (name, text) in files {
        out.push_str(&format!("# ---- {name} ----\n"));
        out.push_str(
            &text
                .replace("/api/authz/", &format!("{}/api/authz/", config.server.base_path()))
                .replace("127.0.0.1:9091", &config.server.listen)
                .replace("127.0.0.1:9092", fcgi)
                .replace(
                    "https://auth.example.com",
                    config.server.portal_url.trim_end_matches('/'),
                )
                .replace("/usr/local/bin/portcullis", &exe)
                .replace("/etc/portcullis/portcullis.toml", &abs.display().to_string()),
        );
        out.push('\n');
    }
    out
}

/// Prints the snippets.
pub fn print(config_path: &Path, flavor: Flavor) -> Result<()> {
    let config = Settings::load(config_path)?;
    print!("{}", render(&config, config_path, flavor));
    Ok(())
}
