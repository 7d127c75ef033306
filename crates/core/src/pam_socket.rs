//! What `pam_portcullis.so` asks a running gateway over `[pam] socket`, and its answer:
//! one JSON document each way, one question per connection. The module then needs no
//! database client of its own (sshd stays small), and PAM logins share the gateway's
//! PostgreSQL directory, Redis regulation and bans with every other way in.

use crate::authz::{AuthEvent, Authorizer, StepResult};
use crate::credentials::{Credentials, Prompt};
use crate::gate::{GateError, Rejection};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The longest question or answer either side reads (a user name, a password and a code).
pub const MAX_MESSAGE: usize = 8 * 1024;

/// A question from the PAM module.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Question {
    /// What to ask `user` for ([`Authorizer::prompt_for`]).
    Prompt {
        /// PAM_USER.
        user: String,
    },
    /// Verify these credentials ([`Authorizer::check_credentials`]).
    Check {
        /// PAM_USER.
        user: String,
        /// The first factor, in `combined` mode.
        password: Option<Zeroizing<String>>,
        /// The code; `None` checks only the password.
        code: Option<Zeroizing<String>>,
        /// PAM_RHOST as sshd gave it.
        client: Option<String>,
        /// The whole answer of a push user, for the core to split, push and wait on.
        #[serde(default)]
        push: bool,
    },
}

/// The gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// The answer to [`Question::Prompt`].
    Prompt(Prompt),
    /// The credentials are right: let in.
    Accepted,
    /// Refused, and why (for the module's log line).
    Refused(Rejection),
    /// The user or the client is banned for now (nothing was checked).
    Banned,
    /// The gateway could not decide (its store is down): the module fails closed.
    Unavailable,
}

impl Question {
    /// Whether answering may hash a password (the gateway runs those on a login slot).
    pub fn hashes(&self) -> bool {
        matches!(self, Question::Check { .. })
    }

    /// Whether answering waits for a person (a push): minutes, not a hash's milliseconds.
    pub fn waits(&self) -> bool {
        matches!(self, Question::Check { push: true, .. })
    }

    /// The question as sent; it holds the password, so it is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        // Serialising owned strings and options cannot fail.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a question; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Question> {
        (bytes.len() <= MAX_MESSAGE).then(|| serde_json::from_slice(bytes).ok())?
    }
}

impl Answer {
    /// The answer as sent.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an answer; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Answer> {
        (bytes.len() <= MAX_MESSAGE).then(|| serde_json::from_slice(bytes).ok())?
    }
}

impl Authorizer<'_> {
    /// Answers one question from the PAM module through the same calls the module makes
    /// when it opens the store itself; a check's auth event is returned for the caller to log.
    pub fn answer_pam(&self, question: &Question) -> Result<(Answer, Option<AuthEvent>), GateError> {
        match question {
            Question::Prompt { user } => Ok((Answer::Prompt(self.prompt_for(user)?), None)),
            Question::Check {
                user,
                password,
                code,
                client,
                push,
            } => {
                let credentials = Credentials {
                    user,
                    password: password.as_deref().map(String::as_str),
                    code: code.as_deref().map(String::as_str),
                    client_ip: client.as_deref().and_then(|h| h.parse().ok()),
                    method: "pam",
                    push: *push,
                };
                let (result, event) = self.check_credentials(&credentials)?;
                let answer = match result {
                    StepResult::Passed(_) => Answer::Accepted,
                    StepResult::Refused(why) => Answer::Refused(why),
                    StepResult::Banned => Answer::Banned,
                };
                Ok((answer, Some(event)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_answers_survive_the_wire_and_nothing_else_is_read() {
        let q = Question::Check {
            user: "ann".into(),
            password: Some(Zeroizing::new("pa\"ss\nword".into())),
            code: Some(Zeroizing::new("123456".into())),
            client: Some("192.0.2.7".into()),
            push: false,
        };
        let Some(Question::Check {
            user,
            password,
            code,
            client,
            ..
        }) = Question::decode(&q.encode())
        else {
            panic!("a check did not survive")
        };
        assert_eq!(
            (
                user.as_str(),
                password.as_deref().map(String::as_str),
                code.as_deref().map(String::as_str)
            ),
            ("ann", Some("pa\"ss\nword"), Some("123456"))
        );
        assert_eq!(client.as_deref(), Some("192.0.2.7"));
        for a in [
            Answer::Prompt(Prompt::Enrolled {
                digits: 8,
                first_factor: true,
                pin: false,
            }),
            Answer::Prompt(Prompt::Unknown),
            Answer::Accepted,
            Answer::Refused(Rejection::Replayed),
            Answer::Banned,
            Answer::Unavailable,
        ] {
            assert_eq!(Answer::decode(&a.encode()), Some(a));
        }
        assert_eq!(
            Answer::encode(&Answer::Refused(Rejection::WrongCode)),
            br#"{"refused":"wrong_code"}"#
        );
        assert!(Question::decode(br#"{"prompt":{"user":"a","extra":1}}"#).is_none());
        assert!(Answer::decode(b"\"accepted\" trailing").is_none());
        assert!(Answer::decode(b"ok").is_none());
        let long = format!(r#"{{"prompt":{{"user":"{}"}}}}"#, "a".repeat(MAX_MESSAGE));
        assert!(Question::decode(long.as_bytes()).is_none());
    }
}
