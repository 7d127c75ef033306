//! Crash safety: SIGKILL a process that loops `update` at random moments; the file must always stay whole.
#![allow(clippy::disallowed_methods)] // test seeds its RNG from the clock
//!
//! The writer is this same test binary re-run with an environment variable set
//! (examples cannot be located from an integration test without building them first).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_userfiles::otp_users::{self, Dialect};

const WRITER_ENV: &str = "PORTCULLIS_USERFILES_CRASH_WRITER";
const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn sample() -> String {
    let mut s = String::from("# users.oath used by the crash-safety test\n\n");
    for (i, u) in USERS.iter().enumerate() {
        s.push_str(&format!("HOTP/T30\t{u}\t-\t{:040x}\t0\n# note after {u}\n", i + 1));
    }
    s
}

/// The writer `sigkill_during_rewrites_never_corrupts` spawns and kills (ignored, so a
/// normal run neither runs it nor counts it as a passed test). Says `ready` once its first
/// update is on disk, so every kill lands while it is rewriting.
#[test]
#[ignore = "a helper process: run only by sigkill_during_rewrites_never_corrupts"]
fn writer_child() {
    use std::io::Write;
    let path = std::env::var(WRITER_ENV).expect("spawned by sigkill_during_rewrites_never_corrupts");
    let mut said = false;
    loop {
        otp_users::update(Path::new(&path), Dialect::PamOath, |f| {
            for e in f.entries_mut() {
                let c = e.counter.unwrap_or(0) + 1;
                e.counter = Some(c);
                e.last_otp = Some(format!("{:06}", c % 1_000_000));
            }
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        if !said {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
            said = true;
        }
    }
}

fn check(path: &Path, min_counter: i64) -> i64 {
    let text = fs::read_to_string(path).unwrap();
    let f = otp_users::parse(&text, Dialect::PamOath, path).unwrap();
    let counters: Vec<i64> = USERS
        .iter()
        .map(|u| {
            let mut it = f.entries_for(u);
            let e = it.next().unwrap_or_else(|| panic!("user {u} lost:\n{text}"));
            assert!(it.next().is_none(), "user {u} duplicated");
            e.counter.unwrap_or(0)
        })
        .collect();
    // Every update bumps all users under one lock, so a whole file has equal counters.
    assert!(counters.iter().all(|c| *c == counters[0]), "torn file: {counters:?}");
    assert!(
        counters[0] >= min_counter,
        "counter went backwards: {} < {min_counter}",
        counters[0]
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("# note after")).count(),
        USERS.len()
    );
    counters[0]
}

#[test]
fn sigkill_during_rewrites_never_corrupts() {
    // At least KILLS kills, and on until INSIDE of them landed inside a rewrite: a rewrite is
    // short next to the lock file's linger that follows it, so how many land inside varies.
    const KILLS: usize = 120;
    const INSIDE: usize = 12;
    const MOST_KILLS: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.oath");
    fs::write(&path, sample()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut last = 0;
    // A reader that never takes the lock: rename makes every read see a whole file.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                check(&path, 0);
                reads += 1;
            }
            reads
        })
    };
    let (mut interrupted, mut kills) = (0, 0);
    while kills < KILLS || (interrupted < INSIDE && kills < MOST_KILLS) {
        kills += 1;
        let mut child = Command::new(&exe)
            .args([
                "writer_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(WRITER_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The kill timer starts once the writer has written: every kill hits a writer at work.
        let mut ready = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        while !ready.contains("ready") {
            ready.clear();
            if std::io::BufRead::read_line(&mut out, &mut ready).unwrap() == 0 {
                panic!("the writer ended before its first update");
            }
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // The rewrite starts as `ready` is said and lasts about a millisecond.
        std::thread::sleep(Duration::from_micros(rng % 2_000));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // A temporary file left behind: the kill landed inside a rewrite.
        let mid_rewrite = fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("portcullis-tmp"));
        interrupted += usize::from(mid_rewrite);
        last = check(&path, last);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("a concurrent read saw a torn or lost file");
    assert!(reads > 0, "the reader never read");
    assert!(
        interrupted >= INSIDE,
        "only {interrupted} of {kills} kills landed inside a rewrite; the test proved too little"
    );
    assert!(
        last > 0,
        "the writer never completed an update; the test proved nothing"
    );
    // Temp files from killed writers must not block the next writer, and get cleaned up.
    otp_users::update(&path, Dialect::PamOath, |f| {
        f.entries_mut().for_each(|e| e.counter = Some(last + 1));
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(check(&path, last + 1), last + 1);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("portcullis-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    eprintln!("{kills} kills ({interrupted} inside a rewrite) survived; final counter {last}");
}
