//! The module arguments from the PAM service file (`config=…`, `usersfile=… window=N`,
//! `nullok`, `trusted_networks=…`, …), parsed once per call into [`Options`].

use portcullis_core::client::NetworkSet;
use portcullis_core::credentials::ServiceRules;
use std::path::PathBuf;
use std::time::Duration;

/// Where the configuration lives when neither `config=` nor `usersfile=` is given.
pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.toml";
/// The prompt for the code, as pam_google_authenticator and pam_oath users expect one.
pub const DEFAULT_PROMPT: &str = "One-time code: ";
/// The prompt in `combined` mode, where one answer holds the password and then the code.
pub const DEFAULT_COMBINED_PROMPT: &str = "Password and one-time code: ";
/// pam_oath's default `window` (liboath `pam_oath.c`: `cfg->window = 5`).
pub const DEFAULT_PAM_OATH_WINDOW: u64 = 5;
/// Seconds to wait for the store before failing closed.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The local syslog socket.
pub const DEFAULT_LOG_SOCKET: &str = "/dev/log";
/// Widest `window=` accepted: pam_oath allows any, but ±100 steps of 30 s is already
/// almost two hours either side; more is a typo, not a policy.
const MAX_WINDOW: u64 = 100;

/// Where users, tokens and replay state come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A portcullis configuration: its `[store]` (SQLite or a live users file), `[otp]`
    /// window and `[lockout]` — exactly what the gateway and `portcullis verify` use.
    Config(PathBuf),
    /// A pam_oath `users.oath`, used unchanged (drop-in for `pam_oath.so usersfile=`).
    UsersFile {
        /// The file.
        path: PathBuf,
        /// pam_oath's `window`: TOTP steps either side of now, HOTP counters ahead.
        window: u64,
        /// pam_oath's `digits`: the code length when splitting password+code.
        digits: Option<u32>,
    },
}

/// Where the code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPass {
    /// Always ask.
    Prompt,
    /// Take PAM_AUTHTOK from an earlier module if there is one, else ask.
    Try,
    /// Take PAM_AUTHTOK from an earlier module; fail without one.
    Use,
}

/// Everything the service file can set.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store.
    pub source: Source,
    /// The conversation prompt.
    pub prompt: String,
    /// `nullok`, `trusted_networks=` and `combined`: what a login needs, decided by the core
    /// ([`ServiceRules::plan`]).
    pub rules: ServiceRules,
    /// Where the code comes from.
    pub first_pass: FirstPass,
    /// How long to wait for the store.
    pub timeout: Duration,
    /// The syslog socket (`/dev/log`); tests point it at their own socket.
    pub log_socket: PathBuf,
}

/// A service-file argument the module does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// Not an option this module knows (a typo must not silently weaken the policy).
    #[error("unknown option {0:?}; see README \"sshd\" for the options")]
    Unknown(String),
    /// A value that does not parse or is out of range.
    #[error("option {option}={value:?}: {reason}")]
    Invalid {
        /// The option name.
        option: &'static str,
        /// The value given.
        value: String,
        /// What to write instead.
        reason: String,
    },
    /// Options that cannot go together.
    #[error("{0}")]
    Conflict(&'static str),
}

fn invalid(option: &'static str, value: &str, reason: impl Into<String>) -> OptionError {
    OptionError::Invalid {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Options {
    /// Parses the arguments after the module path in the service file.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Options, OptionError> {
        let mut config = None;
        let mut usersfile = None;
        let mut window = None;
        let mut digits = None;
        let mut prompt = None;
        let mut nullok = false;
        let mut networks: Vec<String> = Vec::new();
        let mut first_pass = FirstPass::Prompt;
        let mut combined = false;
        let mut timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
        let mut log_socket = PathBuf::from(DEFAULT_LOG_SOCKET);
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            match (key, value) {
                ("config", Some(v)) if !v.is_empty() => config = Some(PathBuf::from(v)),
                ("usersfile", Some(v)) if !v.is_empty() => usersfile = Some(PathBuf::from(v)),
                ("window", Some(v)) => {
                    let w: u64 = v
                        .parse()
                        .map_err(|_| invalid("window", v, "use a number of steps, e.g. window=1"))?;
                    if w > MAX_WINDOW {
                        return Err(invalid("window", v, format!("use 0 to {MAX_WINDOW} steps")));
                    }
                    window = Some(w);
                }
                ("digits", Some(v)) => {
                    let d: u32 = v.parse().map_err(|_| invalid("digits", v, "use 6, 7 or 8"))?;
                    if !(6..=10).contains(&d) {
                        return Err(invalid("digits", v, "use 6 to 10"));
                    }
                    digits = Some(d);
                }
                ("prompt", Some(v)) => prompt = Some(v.to_string()),
                ("nullok", None) => nullok = true,
                ("trusted_networks", Some(v)) => {
                    networks.extend(v.split(',').filter(|s| !s.trim().is_empty()).map(str::to_string));
                }
                ("use_first_pass", None) => first_pass = FirstPass::Use,
                ("try_first_pass", None) => first_pass = FirstPass::Try,
                ("combined", None) => combined = true,
                ("timeout", Some(v)) => {
                    let s: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| (1..=300).contains(s))
                        .ok_or_else(|| invalid("timeout", v, "use 1 to 300 seconds"))?;
                    timeout = Duration::from_secs(s);
                }
                ("log_socket", Some(v)) if !v.is_empty() => log_socket = PathBuf::from(v),
                // pam_oath's `debug` and `alwaysok`-free siblings: accepted and ignored so a
                // pam_oath line can be switched by changing only the module name.
                ("debug", None) => {}
                _ => return Err(OptionError::Unknown(arg.to_string())),
            }
        }
        let source = match (config, usersfile) {
            (Some(_), Some(_)) => return Err(OptionError::Conflict("use either config= or usersfile=, not both")),
            (None, Some(path)) => Source::UsersFile {
                path,
                window: window.unwrap_or(DEFAULT_PAM_OATH_WINDOW),
                digits,
            },
            (config, None) => {
                if window.is_some() || digits.is_some() {
                    return Err(OptionError::Conflict(
                        "window= and digits= go with usersfile=; with config= set [otp] window in portcullis.toml",
                    ));
                }
                Source::Config(config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)))
            }
        };
        let trusted_networks = NetworkSet::parse("trusted_networks", &networks)
            .map_err(|e| invalid("trusted_networks", &networks.join(","), e.to_string()))?;
        let prompt = prompt.unwrap_or_else(|| {
            if combined {
                DEFAULT_COMBINED_PROMPT.to_string()
            } else {
                DEFAULT_PROMPT.to_string()
            }
        });
        Ok(Options {
            source,
            prompt,
            rules: ServiceRules {
                combined,
                nullok,
                trusted_networks,
            },
            first_pass,
            timeout,
            log_socket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_portcullis_config_and_no_exemptions() {
        let o = Options::parse::<&str>(&[]).unwrap();
        assert_eq!(o.source, Source::Config(PathBuf::from(DEFAULT_CONFIG)));
        assert_eq!(o.prompt, DEFAULT_PROMPT);
        assert!(!o.rules.nullok && !o.rules.combined && o.rules.trusted_networks.is_empty());
        assert_eq!(o.first_pass, FirstPass::Prompt);
        assert_eq!(o.timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_pam_oath_line_parses_unchanged() {
        let o = Options::parse(&["usersfile=/etc/users.oath", "window=30", "digits=6"]).unwrap();
        assert_eq!(
            o.source,
            Source::UsersFile {
                path: "/etc/users.oath".into(),
                window: 30,
                digits: Some(6)
            }
        );
    }

    #[test]
    fn everything_else() {
        let o = Options::parse(&[
            "config=/x.toml",
            "prompt=Code please: ",
            "nullok",
            "trusted_networks=192.168.1.0/24,10.0.0.0/8",
            "try_first_pass",
            "combined",
            "timeout=3",
        ])
        .unwrap();
        assert_eq!(o.prompt, "Code please: ");
        assert!(o.rules.nullok && o.rules.combined);
        assert!(o.rules.trusted_networks.contains("10.1.2.3".parse().unwrap()));
        assert!(!o.rules.trusted_networks.contains("11.1.2.3".parse().unwrap()));
        assert_eq!(o.first_pass, FirstPass::Try);
        assert_eq!(o.timeout, Duration::from_secs(3));
    }

    #[test]
    fn typos_and_bad_values_are_errors_not_silently_weaker_policy() {
        for bad in [
            &["nulok"][..],
            &["window=abc", "usersfile=/u"],
            &["trusted_networks=10.0.0.0/33"],
            &["timeout=0"],
            &["config=/a", "usersfile=/b"],
            &["config=/a", "window=3"],
            &["digits=4", "usersfile=/u"],
            &["window=1000", "usersfile=/u"],
        ] {
            assert!(Options::parse(bad).is_err(), "{bad:?}");
        }
    }
}
