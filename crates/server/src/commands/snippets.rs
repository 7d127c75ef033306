//! `portcullis config apache|nginx|caddy|traefik`: the shipped contrib/ snippets, with
//! this configuration's addresses and paths put in (the same files the tests use).

use crate::cli::SnippetArgs;
use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

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

impl Flavor {
    /// The shipped files of this flavour, by name.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Flavor::Apache => APACHE,
            Flavor::Nginx => NGINX,
            Flavor::Caddy => CADDY,
            Flavor::Traefik => TRAEFIK,
        }
    }

    /// The subcommand's word.
    fn word(self) -> &'static str {
        match self {
            Flavor::Apache => "apache",
            Flavor::Nginx => "nginx",
            Flavor::Caddy => "caddy",
            Flavor::Traefik => "traefik",
        }
    }

    /// Where the shipped files say they live (the example site includes them from there).
    fn shipped_dir(self) -> &'static str {
        match self {
            Flavor::Apache => "/etc/apache2/portcullis/",
            Flavor::Nginx => "/etc/nginx/portcullis/",
            Flavor::Caddy => "/etc/caddy/",
            Flavor::Traefik => "/etc/traefik/",
        }
    }

    /// What to do with the files once written to `dir`.
    fn next_steps(self, dir: &str) -> String {
        match self {
            Flavor::Apache => format!(
                "next: a2enmod authnz_fcgi headers; load the provider once per server:\n  \
                 echo 'Include {dir}/portcullis-provider.conf' > /etc/apache2/conf-available/portcullis.conf && a2enconf portcullis\n\
                 then `Include {dir}/portcullis-protect.conf` inside a <Location> (see {dir}/example-site.conf) and `apache2ctl configtest`"
            ),
            Flavor::Nginx => format!(
                "next: load the upstream once in http {{ }} (Debian reads conf.d/):\n  \
                 echo 'include {dir}/portcullis-upstream.conf;' > /etc/nginx/conf.d/portcullis.conf\n\
                 then in each server {{ }}: `include {dir}/portcullis-authrequest.conf;`, and in each location: \
                 `include {dir}/portcullis-protect.conf;` (see {dir}/example-site.conf) and `nginx -t`"
            ),
            Flavor::Caddy => {
                format!(
                    "next: `import {dir}/portcullis.caddy` at the top of the Caddyfile, `import portcullis` in each site (see {dir}/Caddyfile.example)"
                )
            }
            Flavor::Traefik => format!(
                "next: point Traefik's file provider at {dir}/portcullis.yml and attach `portcullis-protect@file`"
            ),
        }
    }
}

/// The first comment line of a snippet: what it is for.
fn purpose(text: &str) -> &str {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .map_or("", |l| l.trim_start_matches("portcullis: "))
        .split(". ")
        .next()
        .unwrap_or("")
}

/// One snippet of `flavor` with the configured values substituted; `dir` is where the
/// set is written, so the example site includes the others from there.
fn render_one(config: &Settings, config_path: &Path, flavor: Flavor, text: &str, dir: Option<&str>) -> String {
    let fcgi = if config.apache.fastcgi_listen.is_empty() {
        "127.0.0.1:9092"
    } else {
        config.apache.fastcgi_listen.as_str()
    };
    let exe =
        std::env::current_exe().map_or_else(|_| "/usr/local/bin/portcullis".to_string(), |p| p.display().to_string());
    let abs = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut out = text
        .replace("/api/authz/", &format!("{}/api/authz/", config.server.base_path()))
        .replace("127.0.0.1:9091", &config.server.listen)
        .replace("127.0.0.1:9092", fcgi)
        .replace(
            "https://auth.example.com",
            config.server.portal_url.trim_end_matches('/'),
        )
        .replace("/usr/local/bin/portcullis", &exe)
        .replace("/etc/portcullis/portcullis.toml", &abs.display().to_string());
    if let Some(dir) = dir {
        out = out.replace(flavor.shipped_dir(), &format!("{}/", dir.trim_end_matches('/')));
    }
    out
}

/// The shipped file called `name` (with or without its extension, with or without the
/// `portcullis-` prefix).
fn find(flavor: Flavor, name: &str) -> Option<(&'static str, &'static str)> {
    flavor.files().iter().copied().find(|(file, _)| {
        let stem = file.rsplit_once('.').map_or(*file, |(s, _)| s);
        [*file, stem, stem.trim_start_matches("portcullis-")].contains(&name)
    })
}

/// The list of snippets, for an invocation that named none.
fn listing(flavor: Flavor) -> String {
    let word = flavor.word();
    let mut out = String::from("name a snippet to print, or write them all with --out DIR:\n");
    for (file, text) in flavor.files() {
        out.push_str(&format!("  {file:34} {}\n", purpose(text)));
    }
    out.push_str(&format!(
        "e.g. portcullis config {word} --out {dir}\n     portcullis config {word} {first}",
        dir = flavor.shipped_dir().trim_end_matches('/'),
        first = flavor.files()[0].0
    ));
    out
}

/// `config FLAVOR [NAME] [--out DIR]`: one snippet on stdout, every snippet written to a
/// directory, or (neither) the list on stderr and exit 2, so that `> file` never captures
/// several files in one.
pub fn run(config_path: &Path, flavor: Flavor, args: SnippetArgs) -> Result<ExitCode> {
    let config = Settings::load(config_path)?;
    match (args.name.as_deref(), args.out.as_deref()) {
        (Some(name), _) => {
            let Some((_, text)) = find(flavor, name) else {
                bail!("there is no {} snippet `{name}`; {}", flavor.word(), listing(flavor));
            };
            print!("{}", render_one(&config, config_path, flavor, text, None));
            Ok(ExitCode::SUCCESS)
        }
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the directory", dir.display()))?;
            let dir_text = std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .display()
                .to_string();
            for (file, text) in flavor.files() {
                let path = dir.join(file);
                let body = render_one(&config, config_path, flavor, text, Some(&dir_text));
                portcullis_userfiles::atomic::write_atomic_as(&path, body.as_bytes(), "snippet")
                    .with_context(|| format!("{}: cannot write the snippet", path.display()))?;
                // Web server configuration, no secret: readable like the rest of /etc/nginx.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .with_context(|| format!("{}: cannot set its mode", path.display()))?;
                println!("wrote {}", path.display());
            }
            println!("{}", flavor.next_steps(dir_text.trim_end_matches('/')));
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => {
            eprintln!("{}", listing(flavor));
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snippet_is_found_by_file_name_stem_or_short_name() {
        for name in ["portcullis-provider.conf", "portcullis-provider", "provider"] {
            assert_eq!(
                find(Flavor::Apache, name).map(|f| f.0),
                Some("portcullis-provider.conf")
            );
        }
        assert!(find(Flavor::Apache, "nope").is_none());
        assert_eq!(find(Flavor::Caddy, "portcullis").map(|f| f.0), Some("portcullis.caddy"));
    }

    #[test]
    fn every_shipped_file_says_what_it_is_for() {
        for flavor in [Flavor::Apache, Flavor::Nginx, Flavor::Caddy, Flavor::Traefik] {
            for (file, text) in flavor.files() {
                assert!(purpose(text).len() > 10, "{file} has no purpose line");
            }
        }
    }
}
