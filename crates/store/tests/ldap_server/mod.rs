//! A real OpenLDAP slapd (Debian's `slapd`, driven with `ldap-utils`) for a test: a
//! generated `slapd.conf` and an mdb database for `dc=example,dc=com` in a temp directory,
//! seeded with people, groups (`memberOf` kept by the memberof overlay) and a service
//! account, on free loopback ports (`ldap://` with StartTLS and `ldaps://`, certificate of a
//! test CA), stopped when dropped. The system's own slapd service is neither used nor needed.

#![allow(dead_code)] // each test binary uses part of it

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BASE_DN: &str = "dc=example,dc=com";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PASSWORD: &str = "admin pw";
const SERVICE_DN: &str = "cn=portcullis,ou=services,dc=example,dc=com";
const SERVICE_PASSWORD: &str = "service pw";

/// carol's `portcullisOTP` in the seed.
pub const CAROL_OTP: &str = "otpauth://totp/example:carol?secret=JBSWY3DPEHPK3PXP&issuer=example";

/// The test schema: `portcullisOTP` (IA5 string, single-valued) and the AUXILIARY
/// objectClass `portcullisUser` that MAY hold it (OIDs under 1.3.6.1.4.1.99999, for tests).
pub const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'portcullisOTP'
  DESC 'portcullis: the OTP secret of a user, an otpauth:// URI'
  EQUALITY caseExactIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'portcullisUser'
  DESC 'portcullis: a user with an OTP secret'
  SUP top AUXILIARY MAY portcullisOTP )
";

/// The seeded users (uid, password); all under `ou=people` but dave (`ou=elsewhere`).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice pw"),
    ("bob", "bob pw"),
    ("carol", "carol pw"),
    ("twin1", "twin1 pw"),
    ("twin2", "twin2 pw"),
    ("dave", "dave pw"),
];

/// A running slapd, stopped when dropped.
pub struct Slapd {
    child: Option<Child>,
    port: u16,
    ldaps_port: u16,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

fn require(program: &str, package: &str) {
    let found = ["/usr/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists());
    assert!(
        found,
        "{program} is not installed; run scripts/test or apt-get install {package}"
    );
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn openssl(args: &[&str]) {
    let out = run(Command::new("openssl").args(args), None);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A self-signed test CA (EC P-256, fast to make) in `dir`: its certificate and key.
pub fn test_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-ca.key")));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        path(&key),
        "-out",
        path(&cert),
    ]);
    (cert, key)
}

/// `{SSHA}` hashes of `passwords` (`slappasswd -s`, run side by side).
fn hashes(passwords: &[&str]) -> Vec<String> {
    let children: Vec<Child> = passwords
        .iter()
        .map(|p| {
            Command::new("slappasswd")
                .args(["-h", "{SSHA}", "-s", p])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("slappasswd (package slapd)")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "slappasswd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
            assert!(hash.starts_with("{SSHA}"), "slappasswd printed {hash:?}");
            hash
        })
        .collect()
}

fn config(dir: &Path, root_hash: &str) -> String {
    let d = path(dir);
    format!(
        "\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {d}/portcullis.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key

database mdb
suffix \"{BASE_DN}\"
rootdn \"{ADMIN_DN}\"
rootpw {root_hash}
directory {d}/data
maxsize 16777216
dbnosync
index objectClass,uid,mail,member eq

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to attrs=userPassword
  by * auth
access to *
  by dn.exact=\"{SERVICE_DN}\" read
  by self read
  by anonymous auth
  by * none
"
    )
}

fn seed(hash: &dyn Fn(&str) -> String) -> String {
    let person = |uid: &str, ou: &str, cn: &str, sn: &str, extra: &str| {
        format!(
            "dn: uid={uid},ou={ou},{BASE_DN}\nobjectClass: inetOrgPerson\n{extra}uid: {uid}\n\
             cn: {cn}\nsn: {sn}\nuserPassword: {}\n\n",
            hash(uid)
        )
    };
    let ou = |name: &str| format!("dn: ou={name},{BASE_DN}\nobjectClass: organizationalUnit\nou: {name}\n\n");
    let mut ldif =
        format!("dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n");
    for name in ["people", "groups", "services", "elsewhere"] {
        ldif += &ou(name);
    }
    ldif += &person(
        "alice",
        "people",
        "Alice Liddell",
        "Liddell",
        "displayName: Alice\nmail: alice@example.com\n",
    );
    ldif += &person("bob", "people", "Bob Builder", "Builder", "mail: bob@example.com\n");
    ldif += &person(
        "carol",
        "people",
        "Carol Danvers",
        "Danvers",
        &format!("objectClass: portcullisUser\nmail: carol@example.com\nportcullisOTP: {CAROL_OTP}\n"),
    );
    ldif += &person("twin1", "people", "Twin One", "One", "mail: twin@example.com\n");
    ldif += &person("twin2", "people", "Twin Two", "Two", "mail: twin@example.com\n");
    ldif += &person(
        "dave",
        "elsewhere",
        "Dave Elsewhere",
        "Elsewhere",
        "mail: dave@example.com\n",
    );
    ldif += &format!(
        "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: portcullis\nuserPassword: {}\n\n",
        hash("portcullis")
    );
    let group = |cn: &str, members: &[&str]| {
        let mut g = format!("dn: cn={cn},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            g += &format!("member: uid={m},ou=people,{BASE_DN}\n");
        }
        g + "\n"
    };
    ldif += &group("admins", &["alice"]);
    ldif += &group("staff", &["alice", "bob"]);
    ldif
}

impl Slapd {
    /// A fresh directory, seeded, listening on `url()` (StartTLS available) and
    /// `ldaps_url()`; waits until it answers.
    ///
    /// Seed (`dc=example,dc=com`): `ou=people` with alice (cn Alice Liddell, displayName,
    /// mail alice@example.com), bob (bob@example.com), carol (`portcullisUser` with
    /// [`CAROL_OTP`]), twin1 and twin2 (both twin@example.com); dave in `ou=elsewhere`;
    /// groupOfNames `cn=admins` (alice) and `cn=staff` (alice, bob) in `ou=groups`; the
    /// service account [`Slapd::service_dn`]. Passwords ([`USERS`]: "alice pw", ...) are
    /// stored `{SSHA}`. ACLs: `userPassword` is auth only for everyone; the service account
    /// reads everything else; a user reads their own entry; anonymous may only bind.
    pub fn start_new() -> Slapd {
        require("slapd", "slapd");
        require("slappasswd", "slapd");
        require("ldapadd", "ldap-utils");
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("portcullis.schema"), SCHEMA).unwrap();

        let (ca, ca_key) = test_ca(d, "ldap");
        std::fs::rename(&ca, d.join("ca.pem")).unwrap();
        let ca = d.join("ca.pem");
        // libldap (ldap-utils) checks a server called localhost against the machine's own
        // name instead: the certificate names that too.
        let mut san = "subjectAltName=IP:127.0.0.1,DNS:localhost".to_string();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        if !host.is_empty() && host != "localhost" && !host.contains(',') {
            san += &format!(",DNS:{host}");
        }
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            &san,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-CA",
            path(&ca),
            "-CAkey",
            path(&ca_key),
            "-keyout",
            path(&d.join("server.key")),
            "-out",
            path(&d.join("server.pem")),
        ]);

        let mut names = vec!["admin", "portcullis"];
        names.extend(USERS.iter().map(|(u, _)| *u));
        let mut passwords = vec![ADMIN_PASSWORD, SERVICE_PASSWORD];
        passwords.extend(USERS.iter().map(|(_, p)| *p));
        let hashed: Vec<(&str, String)> = names.into_iter().zip(hashes(&passwords)).collect();
        let hash = |name: &str| hashed.iter().find(|(n, _)| *n == name).map(|(_, h)| h.clone()).unwrap();
        std::fs::write(d.join("slapd.conf"), config(d, &hash("admin"))).unwrap();

        let mut s = Slapd {
            child: None,
            port: 0,
            ldaps_port: 0,
            dir,
            ca,
        };
        // Free ports are picked before slapd binds them: on a (rare) collision, new ones.
        let mut failure = String::new();
        for _ in 0..3 {
            s.port = crate::ports::free_port();
            s.ldaps_port = crate::ports::free_port();
            match s.try_start() {
                Ok(()) => {
                    failure.clear();
                    break;
                }
                Err(e) => failure = e,
            }
        }
        assert!(failure.is_empty(), "{failure}");
        let out = run(
            s.tool("ldapadd")
                .args(["-x", "-H", &s.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD]),
            Some(&seed(&hash)),
        );
        assert!(
            out.status.success(),
            "ldapadd of the seed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
        s
    }

    fn try_start(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("slapd.log"))
            .unwrap();
        // -d 256 (stats): in the foreground, a line per operation into slapd.log.
        let mut child = Command::new("slapd")
            .args(["-d", "256", "-f"])
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("{} {}", self.url(), self.ldaps_url()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("slapd (package slapd)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "slapd exited ({status}) on ports {}/{}: {}",
                    self.port,
                    self.ldaps_port,
                    self.log()
                ));
            }
            let ok = run(
                self.tool("ldapwhoami")
                    .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD]),
                None,
            );
            if ok.status.success() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "slapd did not answer on port {} within 10 s: {}",
            self.port,
            self.log()
        ))
    }

    /// Starts it again (after [`Slapd::stop`]) on the same ports with the same data, and
    /// waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "slapd is already running");
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s): connections are cut, data is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An ldap-utils program (`ldapsearch`, `ldapwhoami`, ...) that trusts [`Slapd::ca_file`]
    /// and gives up after 5 s (`LDAPTIMEOUT`, `LDAPNETWORK_TIMEOUT`).
    pub fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("LDAPTLS_CACERT", &self.ca)
            .env("LDAPTLS_REQCERT", "demand")
            .env("LDAPTIMEOUT", "5")
            .env("LDAPNETWORK_TIMEOUT", "5");
        c
    }

    /// Applies `ldif` (change records: `dn:`, `changetype: modify|add|delete`, ...) with
    /// `ldapmodify` as the admin; panics with its stderr on failure. Mind that a groupOfNames must
    /// keep one `member`: to take alice out of `cn=admins`, replace the members.
    pub fn modify(&self, ldif: &str) {
        let out = run(
            self.tool("ldapmodify")
                .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD]),
            Some(ldif),
        );
        assert!(
            out.status.success(),
            "ldapmodify:\n{ldif}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ldapsearch -LLL` as the admin (no ACLs) under the base DN: the LDIF it prints.
    pub fn search(&self, filter: &str, attrs: &[&str]) -> String {
        let out = run(
            self.tool("ldapsearch")
                .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.url()])
                .args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-b", BASE_DN, filter])
                .args(attrs),
            None,
        );
        assert!(
            out.status.success(),
            "ldapsearch {filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A CA (new, in the temp directory) that did not sign the server's certificate.
    pub fn other_ca(&self) -> PathBuf {
        test_ca(self.dir.path(), "other").0
    }

    /// `ldap://127.0.0.1:PORT` (plain; StartTLS available).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` (TLS from the first byte).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The port of [`Slapd::url`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of [`Slapd::ldaps_url`].
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// The PEM file of the test CA that signed the server's certificate (for 127.0.0.1,
    /// localhost and the machine's hostname).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// `dc=example,dc=com`.
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// `uid={uid},ou=people,dc=example,dc=com`.
    pub fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=people,{BASE_DN}")
    }

    /// `cn={cn},ou=groups,dc=example,dc=com`.
    pub fn group_dn(&self, cn: &str) -> String {
        format!("cn={cn},ou=groups,{BASE_DN}")
    }

    /// The service account that searches: `cn=portcullis,ou=services,dc=example,dc=com`.
    pub fn service_dn(&self) -> &'static str {
        SERVICE_DN
    }

    /// The service account's password.
    pub fn service_password(&self) -> &'static str {
        SERVICE_PASSWORD
    }

    /// The rootdn (beyond ACLs): `cn=admin,dc=example,dc=com`.
    pub fn admin_dn(&self) -> &'static str {
        ADMIN_DN
    }

    /// The rootdn's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// slapd's log (stats level: connections, binds, searches, results), all runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// The temp directory (config, database, certificates, log) and room for a test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback listener that accepts TCP connections and never answers (a hung server);
/// its connections are closed when dropped.
pub struct BlackHole {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A [`BlackHole`] on a free loopback port.
pub fn black_hole() -> BlackHole {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(s) = stream {
                held.push(s);
            }
        }
    });
    BlackHole {
        port,
        stop,
        thread: Some(thread),
    }
}

impl BlackHole {
    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` (the TLS handshake never gets an answer either).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
