//! The crate's error type: every parse error says where (path:line), which field, what is wrong and what to do.
//!
//! Secret material (keys, PINs, scratch codes, passwords, base32 secrets) is never
//! copied into an error: the message describes the problem (length, bad character
//! position) instead of echoing the value.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading, parsing or rewriting a users file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of a text users file could not be understood.
    #[error("{}:{line}: field {field} ({name}): {problem}; {hint}", path.display())]
    Parse {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based field number on that line.
        field: usize,
        /// The field's name as the original tool's documentation calls it.
        name: &'static str,
        /// What was wrong (never contains secret values).
        problem: String,
        /// What the operator should do about it.
        hint: &'static str,
    },
    /// A JSON document (apache_2fa tokens.json) is malformed.
    #[error("{}:{line}:{column}: malformed JSON: {message}; fix the JSON syntax (the file must be one object mapping user names to base32 strings)", path.display())]
    Json {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line of the JSON error.
        line: usize,
        /// 1-based column of the JSON error.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// A per-user value in a JSON document is unusable.
    #[error("{}: user {user:?}: {problem}; {hint}", path.display())]
    JsonEntry {
        /// The file being parsed.
        path: PathBuf,
        /// The user key whose value is bad.
        user: String,
        /// What was wrong (never contains secret values).
        problem: String,
        /// What the operator should do about it.
        hint: &'static str,
    },
    /// An entry (after the caller changed it) cannot be written so the original tool reads it back the same.
    #[error("{}: entry for user {user:?}: {problem}; {hint}", path.display())]
    Unrepresentable {
        /// The file that was about to be written.
        path: PathBuf,
        /// The entry's user name.
        user: String,
        /// Why the entry cannot be written.
        problem: String,
        /// What the caller should change.
        hint: &'static str,
    },
    /// A path we were asked to read, lock or write is a symbolic link.
    #[error("{}: the {role} is a symbolic link; refusing to follow it (CVE-2024-47191-style attack?) — replace it with a regular file", path.display())]
    Symlink {
        /// The offending path.
        path: PathBuf,
        /// Which file it is: "users file", "lock file", "temporary file".
        role: &'static str,
    },
    /// A file we were asked to read does not exist.
    #[error("{}: no such file; check the {role}'s path", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
        /// Which file it is: "users file", "tokens file".
        role: &'static str,
    },
    /// A path exists but is not a regular file.
    #[error("{}: the {role} is not a regular file; replace it with a regular file", path.display())]
    NotRegular {
        /// The offending path.
        path: PathBuf,
        /// Which file it is.
        role: &'static str,
    },
    /// An operating-system call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The path the call was about.
        path: PathBuf,
        /// What we were doing ("open", "rename", ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Convenience constructor for [`Error::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

/// Error from [`crate::otp_users::update`]: either the store failed or the caller's closure did.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// Locking, reading, parsing or writing the file failed; nothing was written.
    Store(Error),
    /// The caller's closure returned an error; nothing was written.
    Callback(E),
}

impl<E: fmt::Display> fmt::Display for UpdateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Store(e) => write!(f, "{e}"),
            UpdateError::Callback(e) => write!(f, "update aborted: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for UpdateError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpdateError::Store(e) => Some(e),
            UpdateError::Callback(e) => Some(e),
        }
    }
}

impl<E> From<Error> for UpdateError<E> {
    fn from(e: Error) -> Self {
        UpdateError::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_update_error_keeps_its_cause() {
        let store: UpdateError<io::Error> = Error::io("/f", "rename", io::Error::other("disk full")).into();
        assert_eq!(store.to_string(), "/f: rename: disk full");
        assert!(store.source().is_some_and(|s| s.to_string() == "/f: rename: disk full"));
        let cb: UpdateError<io::Error> = UpdateError::Callback(io::Error::other("no such user"));
        assert_eq!(cb.to_string(), "update aborted: no such user");
        assert!(cb.source().is_some_and(|s| s.to_string() == "no such user"));
    }
}
