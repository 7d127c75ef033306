//! One call for clients that hand over every credential at once — pam_portcullis under
//! sshd, and anything else that is not a browser: regulation, lockout, replay and the audit
//! event are the same as for the web, on the same store.

use crate::authz::{AuthEvent, Authorizer, StepResult};
use crate::gate::{Attempt, GateError, Outcome, Rejection};
use std::net::IpAddr;

/// What a client sent, already split into its factors.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The user name.
    pub user: &'a str,
    /// The first factor, when this service asks for it (PAM's `combined`, a PIN).
    pub password: Option<&'a str>,
    /// The code; `None` checks the password alone (where one factor is enough).
    pub code: Option<&'a str>,
    /// The client's address, when known (sshd's PAM_RHOST; a local login has none).
    pub client_ip: Option<IpAddr>,
    /// The way in, for the audit event (`pam`, …).
    pub method: &'static str,
    /// A push user's answer ([`Split::Push`]): `password` is what was typed whole (with
    /// `,push` or `,PASSCODE` perhaps), or `code` is, when the password was checked before.
    pub push: bool,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, {}, redacted)", self.user, self.method)
    }
}

/// Splits `password` immediately followed by a `digits`-long code; `None` when the text
/// is shorter than a code (or the cut falls inside a character).
pub fn split_password_code(secret: &str, digits: usize) -> Option<(&str, &str)> {
    let cut = secret.len().checked_sub(digits)?;
    secret.is_char_boundary(cut).then(|| secret.split_at(cut))
}

/// What a client that prompts (PAM's conversation) is to ask a user for, known before it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Prompt {
    /// Not in the directory.
    Unknown,
    /// In the directory without any token or scratch code.
    NoToken,
    /// Has a token or scratch codes.
    Enrolled {
        /// Code length of the first token (6 with scratch codes only): where to split
        /// password+code.
        digits: u32,
        /// Whether the user has a first factor (password or PIN) to check.
        first_factor: bool,
        /// Whether that first factor is a users-file PIN, which only portcullis knows: it is
        /// asked for in front of the code, as pam_oath does.
        pin: bool,
    },
    /// Approves with a push (Duo), perhaps also has a token.
    Push {
        /// Whether the user has a first factor to check.
        first_factor: bool,
        /// Seconds a push may take to be answered: the client waits that long.
        timeout: u64,
    },
}

impl Authorizer<'_> {
    /// What to ask `user` for; checks nothing and counts nothing.
    pub fn prompt_for(&self, user: &str) -> Result<Prompt, GateError> {
        let Some(u) = self.gate.directory.user(&self.gate.canonical(user)?)? else {
            return Ok(Prompt::Unknown);
        };
        if let Some(pushes) = self.pushes.filter(|_| self.pushes_for(&u)) {
            return Ok(Prompt::Push {
                first_factor: u.first_factor.exists(),
                timeout: pushes.timeout(),
            });
        }
        if u.tokens.is_empty() && u.scratch.is_empty() {
            return Ok(Prompt::NoToken);
        }
        Ok(Prompt::Enrolled {
            digits: u.tokens.first().map_or(6, |t| t.digits),
            first_factor: u.first_factor.exists(),
            pin: matches!(u.first_factor, crate::model::FirstFactor::Pin(_)),
        })
    }

    /// Checks credentials given in one piece: refused unseen while the user or the address
    /// is banned; otherwise the factors given are verified (a code updates replay state and
    /// the failure count atomically) and a refusal counts toward a ban, for every way in.
    pub fn check_credentials(&self, c: &Credentials<'_>) -> Result<(StepResult, AuthEvent), GateError> {
        let now = self.clock.now();
        let ip_text = c.client_ip.map(|ip| ip.to_string());
        let name = self.gate.canonical(c.user)?;
        if c.push {
            return self.check_push_credentials(c, &name, now);
        }
        let result = if self.regulator.is_banned_from(Some(&name), c.client_ip, now)? {
            StepResult::Banned
        } else {
            match c.code {
                None => {
                    let password = c.password.unwrap_or("");
                    let stored = self.gate.directory.user(&name)?;
                    let ok = self.gate.check_password_only(&name, stored.as_ref(), password)?;
                    match stored {
                        None => StepResult::Refused(Rejection::UnknownUser),
                        Some(_) if !ok => StepResult::Refused(Rejection::WrongPassword),
                        Some(u) if self.gate.policy.is_locked(&u) => StepResult::Refused(Rejection::Locked),
                        Some(u) => StepResult::Passed(Box::new(u)),
                    }
                }
                Some(code) => {
                    let attempt = Attempt {
                        user: &name,
                        password: c.password,
                        code,
                        client_ip: ip_text.as_deref(),
                        linger: false,
                    };
                    let outcome = self.verify(attempt)?;
                    match outcome {
                        Outcome::Accepted { user, .. } => StepResult::Passed(user),
                        Outcome::Rejected(r) => StepResult::Refused(r),
                    }
                }
            }
        };
        if matches!(result, StepResult::Passed(_)) {
            self.regulator.record_success(&name)?;
        }
        let event = self.record_attempt_from(c.client_ip, &name, c.method, (&result).into(), now)?;
        Ok((result, event))
    }
}

/// A prompting service's rules (pam_portcullis's options): which clients and users pass
/// without a code, and whether the answer carries the password too.
#[derive(Debug, Clone, Default)]
pub struct ServiceRules {
    /// The answer is password followed by code, and the password is checked here.
    pub combined: bool,
    /// Users without a token (or not in the store at all) pass without a code.
    pub nullok: bool,
    /// Clients in these networks need one factor only (the pam_access recipe).
    pub trusted_networks: crate::client::NetworkSet,
}

/// How to split the one answer a prompting client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The answer is the code.
    Code,
    /// The answer is the password alone (one factor is enough here).
    Password,
    /// The answer is the password immediately followed by a `digits`-long code.
    PasswordThenCode {
        /// The code's length.
        digits: u32,
    },
    /// A push user: the answer is handed over whole (`password,push`, `password` alone,
    /// `password,PASSCODE`; without `combined`, `push`, empty or a passcode) and the core
    /// splits it, pushes and waits.
    Push {
        /// Whether the answer starts with the password.
        combined: bool,
    },
}

/// What a prompting client does for one login, decided by the core from the service's rules,
/// the client's address and what the user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Let in without asking; the reason is for the audit line.
    Allow(&'static str),
    /// Ask anyway (a scan of user names must not learn from whether a prompt appears),
    /// then refuse for this reason.
    AskThenRefuse(&'static str),
    /// Ask, split the answer so, and check it with [`Authorizer::check_credentials`].
    Ask {
        /// How the answer splits into factors.
        split: Split,
        /// The audit reason of a success (`code`, or `trusted_network` for a password alone).
        success: &'static str,
    },
}

impl ServiceRules {
    /// Whether the client at `ip` is in a trusted network.
    fn trusted(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.trusted_networks.contains(ip))
    }

    /// Decided before the store is read: a trusted client of a code-only service passes
    /// (the code is the one factor it would have given; the password was checked before us).
    pub fn before_lookup(&self, ip: Option<IpAddr>) -> Option<Plan> {
        (self.trusted(ip) && !self.combined).then_some(Plan::Allow("trusted_network"))
    }

    /// What to do for a user the store describes as `prompt`, for a client at `ip`.
    pub fn plan(&self, ip: Option<IpAddr>, prompt: Prompt) -> Plan {
        let trusted = self.trusted(ip);
        if let Some(plan) = self.before_lookup(ip) {
            return plan;
        }
        if let Prompt::Push { first_factor, .. } = prompt {
            let split = if trusted && self.combined && first_factor {
                Split::Password
            } else {
                Split::Push {
                    combined: self.combined && first_factor,
                }
            };
            let success = if split == Split::Password {
                "trusted_network"
            } else {
                "push"
            };
            return Plan::Ask { split, success };
        }
        let (digits, first_factor, pin) = match prompt {
            Prompt::Enrolled {
                digits,
                first_factor,
                pin,
            } => (digits, first_factor, pin),
            // Without a token there is nothing to ask; only `nullok` lets such users
            // through, and never in combined mode, where we are also the password check.
            Prompt::Unknown | Prompt::NoToken if self.nullok && !self.combined => return Plan::Allow("nullok"),
            Prompt::Unknown if !self.combined || !trusted => return Plan::AskThenRefuse("unknown_user"),
            Prompt::NoToken if !self.combined || !trusted => return Plan::AskThenRefuse("no_token"),
            // Combined mode from a trusted network: only the password, which needs no token.
            Prompt::Unknown | Prompt::NoToken => (0, true, false),
            // Answered above.
            Prompt::Push { .. } => return Plan::AskThenRefuse("no_token"),
        };
        // A PIN is known to no other module: the answer is PIN then code, as with pam_oath.
        let combined = self.combined || pin;
        // Without a first factor, the trusted network's one factor is the code itself.
        let password_alone = trusted && first_factor;
        let split = match (combined && (first_factor || !trusted), password_alone) {
            (true, true) => Split::Password,
            (true, false) => Split::PasswordThenCode { digits },
            (false, _) => Split::Code,
        };
        let success = if password_alone { "trusted_network" } else { "code" };
        Plan::Ask { split, success }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::World;

    #[test]
    fn a_services_rules_decide_what_to_ask_and_who_passes_unasked() {
        let rules = |combined, nullok| ServiceRules {
            combined,
            nullok,
            trusted_networks: crate::client::NetworkSet::parse("trusted_networks", &["10.0.0.0/8".into()]).unwrap(),
        };
        let (lan, wan) = (Some("10.1.2.3".parse().unwrap()), Some("203.0.113.9".parse().unwrap()));
        let enrolled = |first_factor, pin| Prompt::Enrolled {
            digits: 6,
            first_factor,
            pin,
        };
        let ask = |split, success| Plan::Ask { split, success };
        let six = Split::PasswordThenCode { digits: 6 };
        for (rules, ip, prompt, plan) in [
            // Code-only service: a trusted client passes before the store is read.
            (
                rules(false, false),
                lan,
                enrolled(true, false),
                Plan::Allow("trusted_network"),
            ),
            (
                rules(false, false),
                wan,
                enrolled(true, false),
                ask(Split::Code, "code"),
            ),
            (
                rules(false, false),
                None,
                enrolled(true, false),
                ask(Split::Code, "code"),
            ),
            // A users-file PIN is asked in front of the code, even without `combined`.
            (rules(false, false), wan, enrolled(true, true), ask(six, "code")),
            // Combined: password then code; from a trusted network the password alone.
            (rules(true, false), wan, enrolled(true, false), ask(six, "code")),
            (
                rules(true, false),
                lan,
                enrolled(true, false),
                ask(Split::Password, "trusted_network"),
            ),
            // No first factor: the trusted network's one factor is the code.
            (
                rules(true, false),
                lan,
                enrolled(false, false),
                ask(Split::Code, "code"),
            ),
            (rules(true, false), wan, enrolled(false, false), ask(six, "code")),
            // Without a token: refused after a prompt, unless nullok (never in combined).
            (
                rules(false, false),
                wan,
                Prompt::NoToken,
                Plan::AskThenRefuse("no_token"),
            ),
            (
                rules(false, false),
                wan,
                Prompt::Unknown,
                Plan::AskThenRefuse("unknown_user"),
            ),
            (rules(false, true), wan, Prompt::Unknown, Plan::Allow("nullok")),
            (rules(true, true), wan, Prompt::NoToken, Plan::AskThenRefuse("no_token")),
            (
                rules(true, false),
                lan,
                Prompt::NoToken,
                ask(Split::Password, "trusted_network"),
            ),
            // A push user: the core splits the whole answer; a trusted network needs the
            // password alone, as for everyone.
            (
                rules(true, false),
                wan,
                Prompt::Push {
                    first_factor: true,
                    timeout: 60,
                },
                ask(Split::Push { combined: true }, "push"),
            ),
            (
                rules(false, false),
                wan,
                Prompt::Push {
                    first_factor: true,
                    timeout: 60,
                },
                ask(Split::Push { combined: false }, "push"),
            ),
            (
                rules(true, false),
                lan,
                Prompt::Push {
                    first_factor: true,
                    timeout: 60,
                },
                ask(Split::Password, "trusted_network"),
            ),
        ] {
            assert_eq!(rules.plan(ip, prompt), plan, "{rules:?} {ip:?} {prompt:?}");
        }
        assert_eq!(
            rules(true, false).before_lookup(lan),
            None,
            "combined always reads the store"
        );
    }

    fn world() -> (World, impl Fn(i64) -> String) {
        let w = World::new();
        let code = crate::testing::alice_with_pin_and_token(&w);
        (w, code)
    }

    fn creds<'a>(password: Option<&'a str>, code: Option<&'a str>, ip: Option<IpAddr>) -> Credentials<'a> {
        Credentials {
            user: "alice",
            password,
            code,
            client_ip: ip,
            method: "pam",
            push: false,
        }
    }

    #[test]
    fn the_prompt_says_what_to_ask_without_counting_anything() {
        let (w, _) = world();
        let a = w.authorizer();
        assert_eq!(
            a.prompt_for("alice").unwrap(),
            Prompt::Enrolled {
                digits: 6,
                first_factor: true,
                pin: true
            }
        );
        assert_eq!(a.prompt_for("root").unwrap(), Prompt::NoToken);
        assert_eq!(a.prompt_for("nobody").unwrap(), Prompt::Unknown);
        assert_eq!(w.regulator.tracked(), 0);
    }

    #[test]
    fn splitting_needs_a_whole_code_at_the_end() {
        assert_eq!(split_password_code("pw123456", 6), Some(("pw", "123456")));
        assert_eq!(split_password_code("123456", 6), Some(("", "123456")));
        assert_eq!(split_password_code("12345", 6), None);
        assert_eq!(split_password_code("pé", 1), None, "inside a character");
    }

    #[test]
    fn credentials_are_checked_once_and_failures_ban_the_client_for_every_way_in() {
        let (w, code) = world();
        let now = w.clock.0;
        let addr = IpAddr::from([203, 0, 113, 5]);
        let ip = Some(addr);
        let c = code(now);
        let (r, e) = w
            .authorizer()
            .check_credentials(&creds(Some("1234"), Some(&c), ip))
            .unwrap();
        assert!(matches!(r, StepResult::Passed(_)));
        assert_eq!((e.method, e.failure, e.client_ip), ("pam", None, ip));
        let (r, e) = w
            .authorizer()
            .check_credentials(&creds(Some("1234"), Some(&c), ip))
            .unwrap();
        assert_eq!(r, StepResult::Refused(Rejection::Replayed));
        assert_eq!(e.failure, Some("replayed"));
        let (r, _) = w.authorizer().check_credentials(&creds(None, None, ip)).unwrap();
        assert_eq!(
            r,
            StepResult::Refused(Rejection::WrongPassword),
            "password only, none given"
        );
        // Five failures in all (the default): the address is banned, a right answer too.
        for _ in 0..3 {
            w.authorizer()
                .check_credentials(&creds(Some("0000"), Some("000000"), ip))
                .unwrap();
        }
        let (r, e) = w
            .authorizer()
            .check_credentials(&creds(Some("1234"), Some(&c), ip))
            .unwrap();
        assert_eq!((r, e.failure), (StepResult::Banned, Some("banned")));
        // The ban holds on the web too: the portal's password step is refused unseen.
        let (r, _) = w.authorizer().password_step("alice", "1234", addr).unwrap();
        assert_eq!(r, StepResult::Banned);
    }

    #[test]
    fn a_local_login_without_an_address_is_regulated_by_user_name() {
        let (w, _) = world();
        for _ in 0..5 {
            let (r, e) = w
                .authorizer()
                .check_credentials(&creds(None, Some("000000"), None))
                .unwrap();
            assert_ne!(r, StepResult::Banned);
            assert_eq!(e.client_ip, None);
        }
        let (r, _) = w
            .authorizer()
            .check_credentials(&creds(None, Some("000000"), None))
            .unwrap();
        assert_eq!(r, StepResult::Banned, "the user is banned");
        let other = Some(IpAddr::from([198, 51, 100, 1]));
        let (r, _) = w
            .authorizer()
            .check_credentials(&creds(None, Some("000000"), other))
            .unwrap();
        assert_eq!(r, StepResult::Banned, "from anywhere");
    }
}
