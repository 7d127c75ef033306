//! The only unsafe code in portcullis: libpam's C entry points and the few libpam calls a
//! module needs (pam_get_user, pam_get_item, pam_set_item and the conversation), wrapped
//! into [`LibPam`], an implementation of [`PamHandle`]. All decisions live in `auth.rs`.
#![allow(unsafe_code)]

use crate::auth::{PamHandle, PamStatus, authenticate};
use crate::options::Options;
use crate::syslog;
use crate::worker::{Checker, StoreChecker};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// libpam's opaque handle.
#[repr(C)]
pub struct PamHandleT {
    _private: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

// Values from <security/_pam_types.h> (Linux-PAM).
const PAM_SUCCESS: c_int = 0;
const PAM_SERVICE_ERR: c_int = 3;
const PAM_AUTH_ERR: c_int = 7;
const PAM_IGNORE: c_int = 25;
const PAM_SERVICE: c_int = 1;
const PAM_RHOST: c_int = 4;
const PAM_CONV: c_int = 5;
const PAM_AUTHTOK: c_int = 6;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandleT, user: *mut *const c_char, prompt: *const c_char) -> c_int;
    fn pam_get_item(pamh: *const PamHandleT, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
}

/// A live libpam handle for the duration of one entry-point call.
struct LibPam {
    pamh: *mut PamHandleT,
    log_socket: PathBuf,
    service: String,
}

impl LibPam {
    /// A string item, copied out (libpam owns the original).
    fn item(&self, item_type: c_int) -> Option<String> {
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: `pamh` is the handle libpam passed to this entry point and is valid for
        // the call; pam_get_item only writes a pointer to libpam-owned data into `p`.
        let rc = unsafe { pam_get_item(self.pamh, item_type, &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated C strings owned by libpam that stay valid
        // until the next pam_set_item of the same item; we copy before returning.
        let s = unsafe { CStr::from_ptr(p.cast::<c_char>()) };
        Some(s.to_string_lossy().into_owned())
    }
}

impl PamHandle for LibPam {
    fn user(&mut self) -> Option<String> {
        let mut p: *const c_char = std::ptr::null();
        // SAFETY: valid handle; a null prompt makes libpam use its default; `p` receives a
        // libpam-owned string.
        let rc = unsafe { pam_get_user(self.pamh, &mut p, std::ptr::null()) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: PAM_USER is a NUL-terminated string owned by libpam; copied at once.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    fn rhost(&self) -> Option<String> {
        self.item(PAM_RHOST).filter(|s| !s.is_empty())
    }

    fn prompt(&mut self, echo: bool, text: &str) -> Option<Zeroizing<String>> {
        let mut conv: *const c_void = std::ptr::null();
        // SAFETY: valid handle; PAM_CONV is a `struct pam_conv *` owned by the application.
        let rc = unsafe { pam_get_item(self.pamh, PAM_CONV, &mut conv) };
        if rc != PAM_SUCCESS || conv.is_null() {
            return None;
        }
        // SAFETY: libpam guarantees the PAM_CONV item points to a `struct pam_conv`, whose
        // layout `PamConv` mirrors.
        let conv = unsafe { &*conv.cast::<PamConv>() };
        let func = conv.conv?;
        let text = CString::new(text).ok()?;
        let message = PamMessage {
            msg_style: if echo { PAM_PROMPT_ECHO_ON } else { PAM_PROMPT_ECHO_OFF },
            msg: text.as_ptr(),
        };
        let mut messages = [&message as *const PamMessage];
        let mut response: *mut PamResponse = std::ptr::null_mut();
        // SAFETY: one message that outlives the call; the application allocates `response`
        // with malloc (one element for one message) or leaves it null.
        let rc = unsafe { func(1, messages.as_mut_ptr(), &mut response, conv.appdata_ptr) };
        if response.is_null() {
            return None;
        }
        // SAFETY: on return `response` points to one malloc'd `struct pam_response`.
        let resp = unsafe { &mut *response };
        let answer = if resp.resp.is_null() {
            None
        } else {
            // SAFETY: `resp.resp` is a malloc'd NUL-terminated string; we copy it, wipe
            // the original in place (it holds a code or password) and free it.
            unsafe {
                let c = CStr::from_ptr(resp.resp);
                let len = c.to_bytes().len();
                let copy = Zeroizing::new(String::from_utf8_lossy(c.to_bytes()).into_owned());
                std::ptr::write_bytes(resp.resp, 0, len);
                libc::free(resp.resp.cast());
                Some(copy)
            }
        };
        // SAFETY: the response array itself was malloc'd by the application; it is ours to free.
        unsafe { libc::free(response.cast()) };
        if rc != PAM_SUCCESS {
            return None;
        }
        answer
    }

    fn authtok(&self) -> Option<Zeroizing<String>> {
        self.item(PAM_AUTHTOK).map(Zeroizing::new)
    }

    fn set_authtok(&mut self, value: &str) -> bool {
        let Ok(c) = CString::new(value) else { return false };
        let c = Zeroizing::new(c.into_bytes_with_nul());
        // SAFETY: valid handle; libpam copies the NUL-terminated string before returning,
        // so our buffer (wiped on drop) may go away afterwards.
        unsafe { pam_set_item(self.pamh, PAM_AUTHTOK, c.as_ptr().cast()) == PAM_SUCCESS }
    }

    fn log(&mut self, line: &str) {
        let message = format!("pam_portcullis({}:auth): {line}", self.service);
        syslog::send(&self.log_socket, syslog::AUTH_INFO, &message);
    }
}

/// Collects argv into Rust strings.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings (libpam's module arguments).
unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let n = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..n)
        .filter_map(|i| {
            // SAFETY: the caller promises `argc` valid entries.
            let p = unsafe { *argv.add(i) };
            // SAFETY: each entry is a NUL-terminated C string (null ones are skipped).
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// The production store opener: the options' source with the system clock.
fn open_store(options: &Options) -> Box<dyn FnOnce() -> Result<Box<dyn Checker>, String> + Send> {
    let (source, timeout) = (options.source.clone(), options.timeout);
    Box::new(move || StoreChecker::open(&source, timeout))
}

/// PAM authentication entry point: asks for the one-time code and checks it.
///
/// # Safety
/// Called by libpam with a valid handle and `argc` valid argument strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // A panic must not unwind into C; it fails closed instead.
    let result = std::panic::catch_unwind(|| {
        // SAFETY: forwarded from libpam's contract for this entry point.
        let args = unsafe { args(argc, argv) };
        let log_socket = Options::parse(&args)
            .map(|o| o.log_socket)
            .unwrap_or_else(|_| PathBuf::from(crate::options::DEFAULT_LOG_SOCKET));
        let mut pam = LibPam {
            pamh,
            log_socket,
            service: String::new(),
        };
        pam.service = pam.item(PAM_SERVICE).unwrap_or_else(|| "?".into());
        authenticate(&mut pam, &args, open_store)
    });
    match result {
        Ok(PamStatus::Success) => PAM_SUCCESS,
        Ok(PamStatus::Failure) | Err(_) => PAM_AUTH_ERR,
    }
}

/// Credentials: nothing to establish (no Kerberos tickets or the like); success so that
/// `auth required` stacks work.
///
/// # Safety
/// None needed: the arguments are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SUCCESS
}

/// Account management is pam_unix's job (expiry, shell); this module has no opinion.
///
/// # Safety
/// None needed: the arguments are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    _pamh: *mut PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// Sessions: nothing to open.
///
/// # Safety
/// None needed: the arguments are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    _pamh: *mut PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// Sessions: nothing to close.
///
/// # Safety
/// None needed: the arguments are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    _pamh: *mut PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// Tokens are changed with `portcullis user token reset`, not through passwd(1): listing
/// this module in a `password` stack is a configuration error.
///
/// # Safety
/// None needed: the arguments are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    _pamh: *mut PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SERVICE_ERR
}
