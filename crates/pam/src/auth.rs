//! `pam_sm_authenticate` as plain Rust: the decision made against the [`PamHandle`] trait,
//! so every branch is unit-tested without libpam (the FFI in `ffi.rs` only adapts).

use crate::options::{FirstPass, Options};
use crate::worker::{Answer, Check, Checker, Worker, WorkerError};
use portcullis_core::credentials::{Plan, Prompt, Split};
use std::net::IpAddr;
use std::time::Duration;
use zeroize::Zeroizing;

/// What PAM gives a module: the user, the client, the conversation and the log.
pub trait PamHandle {
    /// PAM_USER (asked for through the conversation if unset).
    fn user(&mut self) -> Option<String>;
    /// PAM_RHOST: the client address as sshd saw it.
    fn rhost(&self) -> Option<String>;
    /// Asks the person; `echo` shows what they type.
    fn prompt(&mut self, echo: bool, text: &str) -> Option<Zeroizing<String>>;
    /// PAM_AUTHTOK set by an earlier module.
    fn authtok(&self) -> Option<Zeroizing<String>>;
    /// Sets PAM_AUTHTOK for later modules.
    fn set_authtok(&mut self, value: &str) -> bool;
    /// One line to the authentication log (already free of secrets).
    fn log(&mut self, line: &str);
}

/// The module's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamStatus {
    /// PAM_SUCCESS.
    Success,
    /// PAM_AUTH_ERR: wrong, replayed, locked, unknown, or the store failed (fail closed).
    Failure,
}

/// How a client address is written into log lines: a parsed IP bare (what fail2ban's
/// `<ADDR>` matches), anything else quoted so it cannot imitate other fields.
fn client_field(rhost: Option<&str>) -> String {
    match rhost {
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) => ip.to_canonical().to_string(),
            Err(_) => format!("{h:?}"),
        },
        None => "-".to_string(),
    }
}

/// Writes one audit line. The client comes first and every field a person can type is
/// quoted with `?` (escapes quotes, backslashes and newlines), so fail2ban's anchored
/// pattern cannot be steered by a user name.
fn audit(pam: &mut dyn PamHandle, client: &str, result: &str, reason: &str, user: &str, detail: Option<&str>) {
    let mut line = format!("auth client={client} result=\"{result}\" reason=\"{reason}\" user={user:?}");
    if let Some(d) = detail {
        line.push_str(&format!(" detail={d:?}"));
    }
    pam.log(&line);
}

/// Runs `pam_sm_authenticate` with the store opened by `open` on a worker thread.
pub fn authenticate<F>(pam: &mut dyn PamHandle, args: &[String], open: F) -> PamStatus
where
    F: FnOnce(&Options) -> Box<dyn FnOnce() -> Result<Box<dyn Checker>, String> + Send>,
{
    let rhost = pam.rhost();
    let client = client_field(rhost.as_deref());
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            audit(pam, &client, "error", "bad_option", "", Some(&e.to_string()));
            return PamStatus::Failure;
        }
    };
    let Some(user) = pam.user().filter(|u| !u.is_empty()) else {
        audit(pam, &client, "error", "no_user", "", None);
        return PamStatus::Failure;
    };
    let ip = rhost.as_deref().and_then(|h| h.parse::<IpAddr>().ok());
    if let Some(Plan::Allow(reason)) = options.rules.before_lookup(ip) {
        audit(pam, &client, "success", reason, &user, None);
        return PamStatus::Success;
    }
    let worker = match Worker::start(open(&options), options.timeout) {
        Ok(w) => w,
        Err(e) => return store_failed(pam, &client, &user, &e),
    };
    let lookup = match worker.lookup(&user) {
        Ok(l) => l,
        Err(e) => return store_failed(pam, &client, &user, &e),
    };
    let (split, success) = match options.rules.plan(ip, lookup) {
        Plan::Allow(reason) => {
            audit(pam, &client, "success", reason, &user, None);
            return PamStatus::Success;
        }
        Plan::AskThenRefuse(reason) => {
            let _ = read_answer(pam, &options);
            audit(pam, &client, "failure", reason, &user, None);
            return PamStatus::Failure;
        }
        Plan::Ask { split, success } => (split, success),
    };
    let Some(answer) = read_answer(pam, &options) else {
        audit(pam, &client, "failure", "no_answer", &user, None);
        return PamStatus::Failure;
    };
    // A push user: the gateway splits the answer, pushes and waits for the person.
    let push = match (split, lookup) {
        (Split::Push { .. }, Prompt::Push { timeout, .. }) => Some(Duration::from_secs(timeout.saturating_add(15))),
        _ => None,
    };
    let (password, code) = match split {
        Split::Push { combined: true } => (Some(answer), None),
        Split::Push { combined: false } => (None, Some(answer)),
        Split::Code => (None, Some(answer)),
        Split::Password => (Some(answer), None),
        Split::PasswordThenCode { digits } => match split_combined(&answer, digits) {
            Some((p, c)) => (Some(p), Some(c)),
            None => {
                audit(pam, &client, "failure", "wrong_code", &user, None);
                return PamStatus::Failure;
            }
        },
    };
    // Later modules (e.g. `pam_unix.so use_first_pass`) see the password alone, as with
    // pam_google_authenticator's forward_pass; never a users-file PIN.
    if options.rules.combined
        && let Some(p) = &password
    {
        // A push user's whole answer: the password without its `,push` or `,PASSCODE`.
        let p = if push.is_some() {
            portcullis_core::push::password_part(p)
        } else {
            p.as_str()
        };
        pam.set_authtok(p);
    }
    let check = Check {
        user: user.clone(),
        password,
        code,
        client: rhost.clone(),
        push,
    };
    match worker.check(check) {
        Ok(Answer::Accepted) => {
            audit(pam, &client, "success", success, &user, None);
            PamStatus::Success
        }
        Ok(Answer::Rejected(why)) => {
            audit(pam, &client, "failure", why.label(), &user, None);
            PamStatus::Failure
        }
        Ok(Answer::Banned) => {
            audit(pam, &client, "failure", "banned", &user, None);
            PamStatus::Failure
        }
        Err(e) => store_failed(pam, &client, &user, &e),
    }
}

fn store_failed(pam: &mut dyn PamHandle, client: &str, user: &str, e: &WorkerError) -> PamStatus {
    let reason = match e {
        WorkerError::Timeout(_) => "store_timeout",
        _ => "store_error",
    };
    audit(pam, client, "error", reason, user, Some(&e.to_string()));
    PamStatus::Failure
}

/// The code (or password+code): from PAM_AUTHTOK or the conversation, as the options say.
fn read_answer(pam: &mut dyn PamHandle, options: &Options) -> Option<Zeroizing<String>> {
    let earlier = match options.first_pass {
        FirstPass::Prompt => None,
        FirstPass::Try | FirstPass::Use => pam.authtok().filter(|t| !t.is_empty()),
    };
    match (earlier, options.first_pass) {
        (Some(t), _) => Some(t),
        (None, FirstPass::Use) => None,
        (None, _) => pam.prompt(false, &options.prompt),
    }
}

/// Splits `password` + `code` by the code's length (the core's split, as for HTTP Basic);
/// `None` when the answer is too short.
fn split_combined(answer: &str, digits: u32) -> Option<(Zeroizing<String>, Zeroizing<String>)> {
    let answer = answer.trim_end_matches(['\r', '\n']);
    let (p, c) = portcullis_core::credentials::split_password_code(answer, usize::try_from(digits).ok()?)?;
    Some((Zeroizing::new(p.to_string()), Zeroizing::new(c.to_string())))
}

#[cfg(test)]
mod tests;
