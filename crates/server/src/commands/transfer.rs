//! `import` and `export`: the users files of mod_authn_otp, pam_oath, google-authenticator
//! and apache_2fa.

use super::Context_;
use crate::cli::{ExportFormat, ImportFormat};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Imports users from `files`.
pub fn import(
    _ctx: &Context_,
    _format: ImportFormat,
    _user: Option<&str>,
    _replace: bool,
    _files: &[PathBuf],
) -> Result<ExitCode> {
    bail!("import is not built yet")
}

/// Exports OATH tokens to `file`.
pub fn export(_ctx: &Context_, _format: ExportFormat, _file: &Path) -> Result<ExitCode> {
    bail!("export is not built yet")
}
