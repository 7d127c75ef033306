//! What each subcommand does; `run` dispatches.

mod docs;
mod otp;
mod setup;
mod snippets;
mod stores;
mod transfer;
mod users;

use crate::cli::{Cli, Command, ConfigCommand, StoreCommand};
use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use portcullis_core::engine::Engine;
use portcullis_core::gate::{Attempt, Outcome, VerifyPolicy};
use portcullis_core::{Directory, SystemClock};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use zeroize::Zeroizing;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init {
            dir,
            force,
            portal_url,
            domain,
            listen,
        } => setup::init(
            &dir,
            force,
            &setup::Site {
                portal_url: portal_url.as_deref(),
                domain: domain.as_deref(),
                listen: listen.as_deref(),
            },
        )
        .map(|_| ExitCode::SUCCESS),
        Command::Demo { .. } if cli.config_given => bail!(
            "--config {}: the demo keeps its own configuration in --dir (default ./demo); drop --config, or use `portcullis serve` with that file",
            cli.config.display()
        ),
        Command::Demo { dir, listen, no_serve } => setup::demo(&dir, &listen, !no_serve),
        Command::Serve { listen } => {
            let config = Settings::load(&cli.config)?;
            crate::gateway::serve(config, listen).map(|_| ExitCode::SUCCESS)
        }
        Command::User(cmd) => users::run(&cli.config, cmd),
        Command::Verify {
            user,
            code,
            password_stdin,
            client_ip,
        } => {
            let ctx = Context_::load(&cli.config)?;
            let password = password_stdin.then(read_password_stdin).transpose()?;
            verify(
                &ctx,
                &user,
                password.as_deref().map(|s| s.as_str()),
                &code,
                client_ip.as_deref(),
            )
        }
        Command::Otp(cmd) => otp::run(cmd),
        Command::Qr { uri, png, svg } => otp::qr(&uri, png.as_deref(), svg.as_deref()),
        Command::Import {
            format,
            user,
            replace,
            files,
        } => {
            let ctx = Context_::load(&cli.config)?;
            transfer::import(&ctx, format, user.as_deref(), replace, &files)
        }
        Command::Export { format, file } => {
            let ctx = Context_::load(&cli.config)?;
            transfer::export(&ctx, format, &file)
        }
        Command::Check => crate::gateway::check::run(Settings::load(&cli.config)?),
        Command::Duo(crate::cli::DuoCommand::Check) => crate::duo::check(&cli.config),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(&out),
        Command::Config(ConfigCommand::Apache(a)) => snippets::run(&cli.config, snippets::Flavor::Apache, a),
        Command::Config(ConfigCommand::Nginx(a)) => snippets::run(&cli.config, snippets::Flavor::Nginx, a),
        Command::Config(ConfigCommand::Caddy(a)) => snippets::run(&cli.config, snippets::Flavor::Caddy, a),
        Command::Config(ConfigCommand::Traefik(a)) => snippets::run(&cli.config, snippets::Flavor::Traefik, a),
        Command::Config(ConfigCommand::Check) => config_check(&cli.config),
        Command::Store(StoreCommand::Check) => stores::check(&cli.config),
        Command::Store(StoreCommand::Migrate {
            to,
            password_file,
            ca_file,
            no_tls,
        }) => stores::migrate(
            &cli.config,
            &stores::Target {
                url: to,
                password_file,
                ca_file,
                no_tls,
            },
        ),
    }
}

/// `config check`: every problem in the file on its own line (exit 2), or a summary of the
/// store it names.
fn config_check(path: &std::path::Path) -> Result<ExitCode> {
    let c = match Settings::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.errors() {
                eprintln!("error: {e}");
            }
            let n = errors.errors().len();
            eprintln!(
                "{}: {} found; fix {} and run `portcullis config check` again",
                path.display(),
                plural(n, "problem", "problems"),
                if n == 1 { "it" } else { "them" }
            );
            return Ok(ExitCode::from(2));
        }
    };
    for problem in &c.serve_problems {
        eprintln!("error: {problem}");
    }
    for warning in &c.warnings {
        eprintln!("warning: {warning}");
    }
    if !c.serve_problems.is_empty() {
        let n = c.serve_problems.len();
        eprintln!(
            "{}: `portcullis serve` would refuse this ({}); other commands work with it",
            path.display(),
            plural(n, "problem", "problems")
        );
        return Ok(ExitCode::from(2));
    }
    let store =
        portcullis_store::open(&c.core).with_context(|| format!("{}: [store] cannot be opened", path.display()))?;
    let at = match c.core.store.backend {
        portcullis_core::config::StoreKind::Postgres => c.core.store.url.clone(),
        _ => c.core.resolve(&c.core.store.path).display().to_string(),
    };
    println!(
        "{}: OK ({} store at {at}, {})",
        path.display(),
        store.backend(),
        plural(store.users()?.len(), "user", "users")
    );
    Ok(ExitCode::SUCCESS)
}

/// A count with its noun, singular for exactly one: `plural(1, "user", "users")` is
/// `1 user`, `plural(0, "user", "users")` is `0 users`. Every count a command prints goes
/// through this, so none reads "1 users".
pub fn plural<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}

/// A Unix time as people read it (UTC), for `user show` and listings.
pub fn when(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(
        |_| format!("at unix time {unix}"),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A loaded configuration with its open store.
pub struct Context_ {
    /// The configuration file's path, for messages that say what to change in it.
    pub path: std::path::PathBuf,
    /// The configuration.
    pub config: Settings,
    /// The store it names.
    pub store: std::sync::Arc<dyn Directory>,
}

impl Context_ {
    /// Loads the configuration and opens the store.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let config = Settings::load(path)?;
        let store = std::sync::Arc::from(portcullis_store::open(&config.core)?);
        Ok(Context_ {
            path: path.to_path_buf(),
            config,
            store,
        })
    }

    /// The core over this store, as a credential check sees it: the configured rules, the
    /// system clock, regulation in this process only (nothing is counted toward a ban).
    pub fn engine(&self) -> Result<Engine> {
        Ok(Engine::for_credentials(
            self.store.clone(),
            VerifyPolicy::from_config(&self.config.core),
            portcullis_store::first_factor_source(&self.config.core)?,
            portcullis_core::Regulator::off(),
            std::sync::Arc::new(SystemClock),
        )?)
    }
}

impl crate::cli::SecretSource {
    /// The secret given, if any.
    pub fn read(&self) -> Result<Option<Zeroizing<String>>> {
        secret_from(
            "secret",
            self.secret.as_deref(),
            self.secret_stdin,
            self.secret_file.as_deref(),
        )
    }
}

/// A secret from `--NAME VALUE`, `--NAME-stdin` (first line) or `--NAME-file PATH` (first
/// line); `None` when none was given. Values on the command line are visible to other
/// users, so the help and README show the other two.
pub fn secret_from(
    option: &str,
    inline: Option<&str>,
    stdin: bool,
    file: Option<&std::path::Path>,
) -> Result<Option<Zeroizing<String>>> {
    let first_line = |text: &str| Zeroizing::new(text.lines().next().unwrap_or("").trim().to_string());
    let value = if let Some(v) = inline {
        Zeroizing::new(v.to_string())
    } else if stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .with_context(|| format!("--{option}-stdin: cannot read standard input"))?;
        first_line(&line)
    } else if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--{option}-file {}: cannot read it", path.display()))?,
        );
        first_line(&text)
    } else {
        return Ok(None);
    };
    if value.is_empty() {
        bail!("--{option}: the value is empty");
    }
    Ok(Some(value))
}

/// Reads a password: the first line of stdin when `--password-stdin`.
pub fn read_password_stdin() -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    Ok(trimmed)
}

/// Asks for a new password on the terminal twice, or reads it from stdin.
pub fn new_password(from_stdin: bool) -> Result<Zeroizing<String>> {
    let pw = if from_stdin {
        read_password_stdin()?
    } else if std::io::stdin().is_terminal() {
        let a = Zeroizing::new(rpassword::prompt_password("New password: ")?);
        let b = Zeroizing::new(rpassword::prompt_password("Again: ")?);
        if a != b {
            bail!("the two passwords differ; nothing was changed");
        }
        a
    } else {
        bail!("no terminal to ask for a password: pass --password-stdin and pipe it in, or --no-password");
    };
    if pw.is_empty() {
        bail!("the password is empty; nothing was changed");
    }
    Ok(pw)
}

fn verify(ctx: &Context_, user: &str, password: Option<&str>, code: &str, client_ip: Option<&str>) -> Result<ExitCode> {
    let outcome = ctx.engine()?.authorizer().verify(Attempt {
        user,
        password,
        code,
        client_ip,
        linger: false,
    })?;
    match outcome {
        Outcome::Accepted { via, .. } => {
            let how = match via {
                portcullis_core::gate::Via::Token(i) => format!("a code of token {i}"),
                portcullis_core::gate::Via::Scratch => "a recovery code, now used up".to_string(),
                portcullis_core::gate::Via::Linger(i) => format!("token {i}'s code accepted moments ago"),
                portcullis_core::gate::Via::Passkey => "a passkey".to_string(),
            };
            println!("accepted: {user} ({how})");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Rejected(why) => {
            println!("rejected: {user}: {}", why.explain());
            Ok(ExitCode::from(1))
        }
    }
}
