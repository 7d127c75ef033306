//! The `portcullis` command: set-up, user and token administration, verification, OTP tools.

mod cli;
mod commands;
mod duo;
mod gateway;
mod passkeys;
mod qr;
mod settings;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::from_env();
    // `portcullis user invite bob | head -1`: a reader that has gone is not an error. The
    // standard library makes a write to a closed pipe panic in println!; that panic is
    // neither printed nor an error here (SIGPIPE's default would need unsafe code).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    match std::panic::catch_unwind(|| commands::run(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e))
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(2)
        }
        Err(p) if is_closed_pipe(p.as_ref()) => ExitCode::SUCCESS,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// An error and its causes on one line, each cause once: a library error that already
/// names its OS error is not followed by the same OS error again.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Whether a panic is std's "failed printing to stdout: Broken pipe (os error 32)".
fn is_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    text.is_some_and(|t| t.starts_with("failed printing to std") && t.contains("os error 32"))
}
