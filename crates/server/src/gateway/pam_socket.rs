//! The `[pam] socket`: `pam_portcullis.so` inside sshd asks the running gateway what to
//! prompt for and whether the answer is right (`portcullis_core::pam_socket`), so an SSH
//! login shares the gateway's store, regulation and bans, whatever engines hold them.
//! Only root (sshd) and the gateway's own user may ask.

use super::App;
use anyhow::{Context, Result};
use portcullis_core::pam_socket::{Answer, MAX_MESSAGE, Question};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroizing;

/// How long a connection may take to send its question.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The loop that answers the PAM module on `listener` (bound at `path`) until the runtime
/// stops. The gateway's user is the socket's owner.
pub fn serve(app: Arc<App>, listener: UnixListener, path: &str) -> Result<impl Future<Output = ()> + use<>> {
    let owner = std::fs::metadata(path)
        .with_context(|| format!("[pam] socket: cannot read back {path}"))?
        .uid();
    Ok(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move { answer(app, conn, owner).await });
        }
    })
}

/// Answers one connection: a question from root or `owner`, else nothing.
async fn answer(app: Arc<App>, mut conn: UnixStream, owner: u32) {
    let uid = conn.peer_cred().map(|c| c.uid());
    if !matches!(uid, Ok(u) if u == 0 || u == owner) {
        tracing::warn!(peer_uid = ?uid.ok(), "[pam] socket: a process of another user was refused");
        return;
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    let mut limited = (&mut conn).take(MAX_MESSAGE as u64 + 1);
    let question = match tokio::time::timeout(READ_TIMEOUT, limited.read_to_end(&mut buf)).await {
        Ok(Ok(_)) => Question::decode(&buf),
        _ => None,
    };
    let Some(question) = question else {
        tracing::warn!("[pam] socket: a malformed or unfinished question was refused");
        return;
    };
    let reply = decide(&app, question).await;
    let _ = conn.write_all(&reply.encode()).await;
}

/// The core's answer; `Unavailable` when the store failed or every login slot was busy
/// (already logged here: the module only says the gateway could not decide).
async fn decide(app: &Arc<App>, question: Question) -> Answer {
    // A push waits for a person: not on a login slot, which it would hold for a minute
    // (only sshd, as root, and the gateway's user reach this socket).
    let hashes = question.hashes() && !question.waits();
    let worker = app.clone();
    let work = move || worker.authorizer().answer_pam(&question);
    let result = if hashes {
        let banned = |r: &Result<(Answer, _), _>| matches!(r, Ok((Answer::Banned, _)));
        app.with_paced_login_slot(work, banned).await
    } else {
        tokio::task::spawn_blocking(work).await.ok()
    };
    match result {
        Some(Ok((answer, event))) => {
            if let Some(e) = &event {
                app.record(e);
            }
            answer
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "[pam] socket: cannot answer the PAM module; it refuses the login");
            Answer::Unavailable
        }
        None => {
            tracing::warn!("[pam] socket: every login slot is busy; the PAM module refuses the login");
            Answer::Unavailable
        }
    }
}
