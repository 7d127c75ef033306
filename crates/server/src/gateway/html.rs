//! The portal's pages: plain server-rendered HTML that works without JavaScript, with
//! labelled fields, a viewport for phones and everything user-supplied escaped.

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f3f4f6;color:#111827}
main{max-width:26rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{width:100%;padding:.7rem;font-size:1rem;border:1px solid #9ca3af;border-radius:8px}
input:focus{outline:3px solid #93c5fd;border-color:#2563eb}
button{width:100%;margin-top:1.5rem;padding:.8rem;font-size:1rem;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:8px;cursor:pointer}
.error{padding:.75rem;border-radius:8px;background:#fef2f2;color:#991b1b;border:1px solid #fecaca}
.note{padding:.75rem;border-radius:8px;background:#eff6ff;color:#1e3a8a;border:1px solid #bfdbfe}
.hint{color:#4b5563;font-size:.9rem}
.qr{display:block;margin:1rem auto;width:min(100%,16rem)}
code{word-break:break-all;font-size:.85rem}
.keys{padding:0;list-style:none}.keys li{margin:.75rem 0;padding:.5rem 0;border-bottom:1px solid #e5e7eb}
.keys button{margin-top:.5rem;padding:.4rem;background:#b91c1c}
footer{margin-top:1.5rem;color:#6b7280;font-size:.8rem;text-align:center}
@media (max-width:30rem){main{margin:0;min-height:100vh;border-radius:0}}
";

/// A complete page around `body`.
pub fn page(title: &str, body: &str) -> String {
    page_with_head(title, "", body)
}

/// A complete page with `head` (trusted markup) added to its head.
fn page_with_head(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"same-origin\"><title>{t} · portcullis</title><style>{STYLE}</style>{head}</head>\
<body><main>{body}<footer>portcullis</footer></main></body></html>",
        t = escape(title)
    )
}

/// The "Send a push" button on the code page.
pub fn push_form(base: &str, csrf: &str, rd: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{base}/login/push\">{}{}<button type=\"submit\">Send a push</button></form>\
<p class=\"hint\">Or enter a code below (a Duo passcode works too).</p>",
        hidden("csrf", csrf),
        hidden("rd", rd),
    )
}

/// The script tag of the passkey buttons (served from the portal: the CSP allows it).
fn passkey_script(base: &str) -> String {
    format!("<script src=\"{}/passkey.js\" defer></script>", escape(base))
}

/// A passkey button: hidden until `passkey.js` finds WebAuthn in the browser.
fn passkey_button(kind: &str, begin: &str, finish: &str, csrf: &str, rd: &str, label: &str) -> String {
    format!(
        "<button type=\"button\" hidden data-passkey=\"{kind}\" data-begin=\"{}\" data-finish=\"{}\" \
data-csrf=\"{}\" data-rd=\"{}\">{}</button>",
        escape(begin),
        escape(finish),
        escape(csrf),
        escape(rd),
        escape(label)
    )
}

/// "Use your passkey" on the code page (the code form stays below it).
pub fn passkey_login_button(base: &str, csrf: &str, rd: &str) -> String {
    format!(
        "{}{}<p id=\"passkey-status\" class=\"note\" role=\"status\" hidden></p>\
<p class=\"hint\" hidden data-passkey-hint>Or enter a code below.</p>",
        passkey_button(
            "login",
            &format!("{base}/login/passkey/begin"),
            &format!("{base}/login/passkey/finish"),
            csrf,
            rd,
            "Use your passkey"
        ),
        passkey_script(base)
    )
}

/// The settings page: the person's passkeys with a remove button each, and "Add a passkey".
pub fn settings(
    base: &str,
    csrf: &str,
    user: &portcullis_core::User,
    passkeys_on: bool,
    backend: &str,
    note: Option<&str>,
) -> String {
    let esc_base = escape(base);
    let mut rows = String::new();
    for p in &user.passkeys {
        let used = p.last_used.map_or_else(|| "never".to_string(), date);
        rows.push_str(&format!(
            "<li><strong>{}</strong> <span class=\"hint\">added {}, last used {}{}</span>\
<form method=\"post\" action=\"{esc_base}/settings/passkeys/remove\">{}{}<button type=\"submit\" \
aria-label=\"Remove {}\">Remove</button></form></li>",
            escape(&p.label),
            date(p.created),
            used,
            if p.backup_state { ", synced" } else { "" },
            hidden("csrf", csrf),
            hidden("id", &p.id_text()),
            escape(&p.label),
        ));
    }
    let list = if rows.is_empty() {
        "<p>You have no passkey yet.</p>".to_string()
    } else {
        format!("<ul class=\"keys\">{rows}</ul>")
    };
    let add = if !passkeys_on {
        "<p class=\"hint\">Passkeys are not available on this portal: they are turned off ([webauthn] enabled = false), \
or the portal's address is an IP address (browsers allow passkeys on a domain name only, such as localhost).</p>"
            .to_string()
    } else if backend.ends_with("users file") {
        "<p class=\"hint\">This site keeps users in a users file, which cannot hold passkeys.</p>".to_string()
    } else {
        format!(
            "<label for=\"passkey-label\">Name of the new passkey</label>\
<input id=\"passkey-label\" type=\"text\" maxlength=\"64\" placeholder=\"laptop, phone, YubiKey\">{}\
<p id=\"passkey-status\" class=\"note\" role=\"status\" hidden></p>\
<noscript><p class=\"hint\">Adding a passkey needs JavaScript.</p></noscript>{}",
            passkey_button(
                "register",
                &format!("{base}/settings/passkeys/begin"),
                &format!("{base}/settings/passkeys/finish"),
                csrf,
                "",
                "Add a passkey"
            ),
            passkey_script(base)
        )
    };
    let body = format!(
        "<h1>Passkeys</h1>{msg}<p>Signed in as <strong>{name}</strong>. A passkey or security key signs you in \
after your password, and cannot be phished.</p>{list}{add}<p class=\"hint\"><a href=\"{esc_base}/\">Back</a></p>",
        msg = message_box(None, note),
        name = escape(&user.name),
    );
    page("Passkeys", &body)
}

/// An invitation to register a passkey.
pub fn enroll_passkey(base: &str, csrf: &str, user: &str, token: &str) -> String {
    let at = format!("{base}/enroll/{token}/passkey");
    let body = format!(
        "<h1>Register a passkey</h1><p>For <strong>{}</strong>. Your browser or security key makes the key; \
nothing secret is shown here.</p><label for=\"passkey-label\">Name of the passkey</label>\
<input id=\"passkey-label\" type=\"text\" maxlength=\"64\" placeholder=\"laptop, phone, YubiKey\">{}\
<p id=\"passkey-status\" class=\"note\" role=\"status\" hidden></p>\
<noscript><p class=\"error\">Registering a passkey needs JavaScript.</p></noscript>{}",
        escape(user),
        passkey_button(
            "register",
            &format!("{at}/begin"),
            &format!("{at}/finish"),
            csrf,
            "",
            "Register a passkey"
        ),
        passkey_script(base)
    );
    page("Register a passkey", &body)
}

/// A unix time as a UTC date.
fn date(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| "?".into(), |ts| ts.strftime("%Y-%m-%d").to_string())
}

/// The page that waits for a push answer: it reloads itself without JavaScript, and with
/// it `push.js` waits in place.
pub fn push_waiting(base: &str, rd: &str, device: &str) -> String {
    let rd_q = super::web::query_escape(rd);
    let poll = escape(&format!("{base}/login/push?rd={rd_q}&poll=1"));
    let status = escape(&format!("{base}/login/push/status?rd={rd_q}"));
    let head = format!(
        "<noscript><meta http-equiv=\"refresh\" content=\"1;url={poll}\"></noscript>\
<script src=\"{}/login/push.js\" defer></script>",
        escape(base)
    );
    let body = format!(
        "<h1>Approve the sign-in</h1><p class=\"note\" role=\"status\" id=\"push-status\" data-status=\"{status}\" data-poll=\"{poll}\">\
Push sent to <strong>{}</strong>. Approve it there; this page goes on by itself.</p>\
<p class=\"hint\"><a href=\"{}\">Use a code instead</a></p>",
        escape(if device.is_empty() { "your device" } else { device }),
        escape(&format!("{base}/login/code?rd={rd_q}")),
    );
    page_with_head("Approve the sign-in", &head, &body)
}

fn message_box(error: Option<&str>, note: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        out.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)));
    }
    if let Some(n) = note {
        out.push_str(&format!("<p class=\"note\" role=\"status\">{}</p>", escape(n)));
    }
    out
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// What the code field says when signing in (a recovery code works there too).
const SIGN_IN_HINT: &str = "The code from your authenticator app, or one of your recovery codes.";

/// The code field, shared by the code page, the one-page login and enrollment.
fn code_field(autofocus: bool, hint: &str) -> String {
    format!(
        "<label for=\"code\">One-time code</label>\
<input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
maxlength=\"10\" required{} aria-describedby=\"code-hint\">\
<p id=\"code-hint\" class=\"hint\">{}</p>",
        if autofocus { " autofocus" } else { "" },
        escape(hint)
    )
}

/// The one-page form's code field: not required (a passkey user leaves it empty and is
/// offered the passkey on the next page).
fn code_field_optional(hint: &str) -> String {
    code_field(false, hint).replacen(" required", "", 1)
}

/// The login form: user name and password, plus the code when `with_code` (one-page
/// mode), with "Sign in with a passkey" above it when `passwordless`.
#[allow(clippy::too_many_arguments)]
pub fn login(
    base: &str,
    csrf: &str,
    rd: &str,
    username: &str,
    with_code: bool,
    error: Option<&str>,
    note: Option<&str>,
    passwordless: bool,
) -> String {
    let passkey = if passwordless {
        format!(
            "{}<p id=\"passkey-status\" class=\"note\" role=\"status\" hidden></p>\
<p class=\"hint\" hidden data-passkey-hint>Or sign in with your password:</p>{}",
            passkey_button(
                "passwordless",
                &format!("{base}/login/passwordless/begin"),
                &format!("{base}/login/passwordless/finish"),
                csrf,
                rd,
                "Sign in with a passkey"
            ),
            passkey_script(base)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Sign in</h1>{msg}{passkey}<form method=\"post\" action=\"{base}/login\">{csrf}{rd}\
<label for=\"username\">User name</label>\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" \
spellcheck=\"false\" required value=\"{user}\"{focus_user}>\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"{focus_pw}>\
{code}<button type=\"submit\">Sign in</button></form>",
        msg = message_box(error, note),
        csrf = hidden("csrf", csrf),
        rd = hidden("rd", rd),
        user = escape(username),
        focus_user = if username.is_empty() { " autofocus" } else { "" },
        focus_pw = if username.is_empty() { "" } else { " autofocus" },
        code = if with_code {
            code_field_optional(SIGN_IN_HINT)
        } else {
            String::new()
        },
    );
    page("Sign in", &body)
}

/// The second step: the one-time code.
pub fn code(base: &str, csrf: &str, rd: &str, user: &str, error: Option<&str>, push: Option<&str>) -> String {
    let body = format!(
        "<h1>Two-step verification</h1>{msg}<p>Signed in as <strong>{user}</strong>. Enter the current code.</p>\
{push}<form method=\"post\" action=\"{base}/login/code\">{csrf}{rd}{code}<button type=\"submit\">Verify</button></form>\
{logout}",
        msg = message_box(error, None),
        user = escape(user),
        push = push.unwrap_or(""),
        csrf = hidden("csrf", csrf),
        rd = hidden("rd", rd),
        code = code_field(push.is_none(), SIGN_IN_HINT),
        logout = logout_form(base, csrf, rd, "Not you? Sign out"),
    );
    page("Verification", &body)
}

/// A sign-out button: logout is a POST with the CSRF token, so no link or image on
/// another site can sign anyone out.
fn logout_form(base: &str, csrf: &str, rd: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{base}/logout\" class=\"hint\">{}{}<button type=\"submit\">{}</button></form>",
        hidden("csrf", csrf),
        hidden("rd", rd),
        escape(label)
    )
}

/// `GET /logout`: asks before signing out (a GET changes nothing).
pub fn logout_confirm(base: &str, csrf: &str, rd: &str) -> String {
    page(
        "Sign out",
        &format!(
            "<h1>Sign out?</h1><p>You will need your password and a code to sign in again.</p>{}",
            logout_form(base, csrf, rd, "Sign out")
        ),
    )
}

/// A simple message page with an optional link.
pub fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label)))
        .unwrap_or_default();
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>{link}", escape(title), escape(text)),
    )
}

/// The base32 key of an otpauth URI in groups of four, as apps ask for it when typed.
fn grouped_key(uri: &str) -> String {
    let key = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or("");
    key.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The new key as the enrollment page shows it, once.
pub struct Shown<'a> {
    /// The QR code, an inline SVG.
    pub qr_svg: &'a str,
    /// The otpauth:// URI.
    pub uri: &'a str,
    /// The token's settings for typing the key by hand ("time-based, 30 s, 6 digits, SHA1").
    pub settings: &'a str,
}

/// The enrollment link's first page: a button, so that fetching the link reveals nothing.
pub fn enroll_start(csrf: &str, user: &str) -> String {
    let body = format!(
        "<h1>Set up two-step verification</h1><p>Account: <strong>{user}</strong></p>\
<p>This link shows your new key once. Have your authenticator app ready.</p>\
<form method=\"post\">{csrf}<input type=\"hidden\" name=\"reveal\" value=\"1\"><button type=\"submit\">Show my key</button></form>",
        user = escape(user),
        csrf = hidden("csrf", csrf),
    );
    page("Enroll", &body)
}

/// The enrollment page: the QR code (inline SVG) and URI shown once, and a first code to confirm.
pub fn enroll(csrf: &str, user: &str, shown: Option<Shown<'_>>, error: Option<&str>) -> String {
    let shown = match shown {
        Some(s) => format!(
            "<p>Scan this code with your authenticator app. It is shown only once.</p>\
<div class=\"qr\" role=\"img\" aria-label=\"QR code of your new token\">{svg}</div>\
<details><summary>Can't scan? Enter the key by hand</summary><p>Key ({settings}): \
<code>{}</code></p><p class=\"hint\">Or open this link on the phone: <code>{}</code></p></details>",
            escape(&grouped_key(s.uri)),
            escape(s.uri),
            svg = s.qr_svg,
            settings = escape(s.settings),
        ),
        None => "<p class=\"note\">The QR code was already shown once. If you did not scan it, ask for a new invitation.</p>"
            .to_string(),
    };
    let body = format!(
        "<h1>Set up two-step verification</h1>{msg}<p>Account: <strong>{user}</strong></p>{shown}\
<form method=\"post\">{csrf}{code}<button type=\"submit\">Confirm</button></form>",
        msg = message_box(error, None),
        user = escape(user),
        csrf = hidden("csrf", csrf),
        // Only the new token confirms it: recovery codes do not work here.
        code = code_field(false, "The code your authenticator app shows now for this new account."),
    );
    page("Enroll", &body)
}

/// The portal's front page: who is signed in, with how many factors, and sign-out.
pub fn home(base: &str, csrf: &str, user: &str, groups: &[String], both_factors: bool) -> String {
    let factors = if both_factors {
        "with password and code".to_string()
    } else {
        format!(
            "with one factor: pages that need two will ask for your <a href=\"{}/login/code\">code</a>",
            escape(base)
        )
    };
    let groups = if groups.is_empty() {
        String::new()
    } else {
        format!("<p>Groups: {}</p>", escape(&groups.join(", ")))
    };
    let settings = if both_factors {
        format!(
            "<p><a href=\"{}/settings\">Passkeys and security keys</a></p>",
            escape(base)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Signed in</h1><p class=\"note\">Signed in as <strong>{}</strong> {factors}.</p>{groups}{settings}{}",
        escape(user),
        logout_form(base, csrf, "", "Sign out")
    );
    page("Signed in", &body)
}

/// The demo's protected page.
pub fn demo(base: &str, csrf: &str, user: &str, groups: &[String]) -> String {
    let body = format!(
        "<h1>Protected demo page</h1><p class=\"note\">Hello, <strong>{}</strong>. You passed both factors.</p>\
<p>Groups: {}</p><p><a href=\"{}/settings\">Passkeys and security keys</a></p>{}",
        escape(user),
        escape(&groups.join(", ")),
        escape(base),
        logout_form(base, csrf, "", "Sign out")
    );
    page("Demo", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_under_a_base_path_link_inside_it() {
        let login = login("/.portcullis", "t", "", "", false, None, None, false);
        assert!(login.contains("action=\"/.portcullis/login\""), "{login}");
        let code = code("/.portcullis", "t", "", "bob", None, None);
        assert!(code.contains("action=\"/.portcullis/login/code\""), "{code}");
        assert!(code.contains("action=\"/.portcullis/logout\""), "{code}");
    }

    fn evil_user(evil: &str) -> portcullis_core::User {
        let mut u = portcullis_core::User::new(evil, portcullis_core::FirstFactor::None);
        u.passkeys.push(portcullis_core::model::Passkey {
            id: vec![1],
            label: evil.into(),
            data: String::new(),
            counter: 0,
            backup_eligible: false,
            backup_state: true,
            discoverable: false,
            created: 0,
            last_used: None,
        });
        u
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let evil = "\"><script>alert(1)</script>";
        for html in [
            login("", evil, evil, evil, true, Some(evil), Some(evil), true),
            code("", evil, evil, evil, Some(evil), None),
            push_form("", evil, evil),
            push_waiting("", evil, evil),
            message(evil, evil, Some((evil, evil))),
            enroll(evil, evil, None, Some(evil)),
            home("", evil, evil, &[evil.to_string()], false),
            enroll_start(evil, evil),
            demo("", "t", evil, &[evil.to_string()]),
            passkey_login_button(evil, evil, evil),
            enroll_passkey(evil, evil, evil, evil),
            settings(evil, evil, &evil_user(evil), true, "sqlite", Some(evil)),
        ] {
            assert!(!html.contains("<script>"), "{html}");
        }
    }

    #[test]
    fn fields_have_labels_and_autocomplete() {
        let html = login("", "t", "", "", true, None, None, false);
        for id in ["username", "password", "code"] {
            assert!(html.contains(&format!("<label for=\"{id}\">")), "{id}");
        }
        assert!(html.contains("autocomplete=\"one-time-code\""));
        assert!(html.contains("name=\"viewport\""));
    }

    /// Issue 11.9: the hand-entry hint said "time-based, 30 s" whatever the token was.
    #[test]
    fn the_hand_entry_hint_states_the_tokens_own_settings() {
        let html = enroll(
            "t",
            "bob",
            Some(Shown {
                qr_svg: "<svg></svg>",
                uri: "otpauth://totp/x:bob?secret=JBSWY3DPEHPK3PXP&period=60&digits=8&algorithm=SHA256",
                settings: "time-based, 60 s, 8 digits, SHA256",
            }),
            None,
        );
        assert!(html.contains("Key (time-based, 60 s, 8 digits, SHA256)"), "{html}");
        assert!(!html.contains("30 s"), "{html}");
    }

    #[test]
    fn enrollment_hint_does_not_offer_recovery_codes() {
        let html = enroll("t", "bob", None, None);
        assert!(!html.contains("recovery"), "{html}");
        assert!(code("", "t", "", "bob", None, None).contains("recovery codes"));
    }
}
