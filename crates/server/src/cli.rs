//! Command-line syntax (clap): every subcommand with its help and an example.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Where the configuration is unless --config or PORTCULLIS_CONFIG says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.toml";

/// Two-factor authentication for web servers and SSH.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = DEFAULT_CONFIG
    )]
    pub config: PathBuf,
    /// Whether `--config` was on the command line (not the default or PORTCULLIS_CONFIG).
    #[arg(skip)]
    pub config_given: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments (exits with clap's message on an error).
    pub fn from_env() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.config_given = matches.value_source("config") == Some(clap::parser::ValueSource::CommandLine);
        cli
    }
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a configuration file and an empty embedded store in a directory.
    #[command(
        after_help = "Examples:\n  portcullis init --dir /etc/portcullis \\\n      --portal-url https://auth.example.com --domain example.com\n  portcullis init --dir ./try-it"
    )]
    Init {
        /// Directory to create (mode 0700).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing portcullis.toml.
        #[arg(long)]
        force: bool,
        /// The portal's address as people reach it ([server] portal_url; default_redirect
        /// becomes its front page). An http:// URL on the loopback listener turns off
        /// HTTPS-only cookies, which could never come back over it.
        #[arg(long, value_name = "URL")]
        portal_url: Option<String>,
        /// The domain whose sites portcullis protects: [access] protected_domains becomes
        /// it and its subdomains, [session] domain it (single sign-on across them).
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// The gateway's address and port ([server] listen; default 127.0.0.1:9091).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Run a throw-away demo on 127.0.0.1:9091: a user `demo` (password `demo`), its QR
    /// code in the terminal, and a protected page behind the login portal.
    #[command(after_help = "Example:\n  portcullis demo --dir ./demo")]
    Demo {
        /// Directory for the demo's files (its own portcullis.toml: --config does not apply).
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Address and port to serve the demo on (its portal address follows).
        #[arg(long, default_value = "127.0.0.1:9091")]
        listen: String,
        /// Set up the user and print the QR code, but do not start the gateway.
        #[arg(long)]
        no_serve: bool,
    },
    /// Run the gateway: login portal, forward-auth endpoints, HTTP Basic, metrics.
    #[command(
        after_help = "Example:\n  portcullis --config /etc/portcullis/portcullis.toml \\\n      serve --listen 127.0.0.1:9091"
    )]
    Serve {
        /// Address to listen on (default: [server] listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage users.
    #[command(
        subcommand,
        after_help = "Examples:\n  portcullis user list\n  portcullis user show alice"
    )]
    User(UserCommand),
    /// Check a user's code (and password): exit 0 accepted, 1 refused, 2 error.
    #[command(
        after_help = "Examples:\n  portcullis verify alice 123456\n  printf '%s\\n' \"$PASS\" | portcullis verify alice --password-stdin 123456"
    )]
    Verify {
        /// User name.
        user: String,
        /// The one-time code or a scratch code.
        code: String,
        /// Read the password (first line) from standard input and check it too.
        #[arg(long)]
        password_stdin: bool,
        /// Client address to record (for linger and logs).
        #[arg(long)]
        client_ip: Option<String>,
    },
    /// One-time-password tools that need no store (like oathtool).
    #[command(subcommand, after_help = "Example:\n  portcullis otp code --secret JBSWY3DPEHPK3PXP")]
    Otp(OtpCommand),
    /// Show an otpauth:// URI as a QR code in the terminal, or write it as PNG/SVG.
    #[command(
        after_help = "Examples:\n  portcullis qr - --png alice.png < alice.uri\n  portcullis qr --png alice.png \\\n      'otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP&issuer=ACME'"
    )]
    Qr {
        /// The otpauth:// URI (checked before it is drawn); `-` reads it from standard input,
        /// keeping the secret off the command line.
        uri: String,
        /// Also write a PNG file.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Also write an SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Import users and tokens from the files of the tools portcullis replaces.
    #[command(
        after_help = "Examples:\n  portcullis import --format mod_authn_otp /etc/apache2/otp-users.txt\n  portcullis import --format pam_oath /etc/users.oath\n  portcullis import --format google-authenticator --user alice \\\n      /home/alice/.google_authenticator\n  portcullis import --format apache_2fa /var/www/2fa/tokens.json"
    )]
    Import {
        /// The file format.
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// User name for google-authenticator files (default: the file's owner, when the
        /// file is that owner's ~/.google_authenticator by /etc/passwd; otherwise required).
        #[arg(long)]
        user: Option<String>,
        /// Replace users that already exist instead of skipping them.
        #[arg(long)]
        replace: bool,
        /// Files to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write all OATH tokens to a new mod_authn_otp or pam_oath users file (mode 0600).
    #[command(
        after_help = "Example (write a new file, check it, then move it into place):\n  portcullis export --format pam_oath /etc/users.oath.new\n  mv /etc/users.oath.new /etc/users.oath"
    )]
    Export {
        /// The file format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The file to create; it must not exist yet, so a live users file is never
        /// overwritten.
        file: PathBuf,
    },
    /// Configuration tools.
    #[command(
        subcommand,
        after_help = "Examples:\n  portcullis config check\n  portcullis config nginx --out /etc/nginx/portcullis"
    )]
    Config(ConfigCommand),
    /// Check the configured store and state server, or copy users to PostgreSQL.
    #[command(
        subcommand,
        after_help = "Examples:\n  portcullis store check\n  portcullis store migrate --no-tls \\\n      --to postgres://portcullis@127.0.0.1/portcullis"
    )]
    Store(StoreCommand),
    /// For Apache mod_authnz_external (pipe): reads the user name and the password+code
    /// on two lines of stdin; exit 0 accepted, 1 refused, 2 error. Asks the running
    /// gateway over [apache] check_socket when it is there, else the store directly.
    #[command(
        after_help = "Example (a line of Apache's configuration, not a shell command):\n  DefineExternalAuth portcullis pipe \"/usr/local/bin/portcullis check\""
    )]
    Check,
    /// Duo push ([duo]): check the keys and the clock against Duo.
    #[command(subcommand, after_help = "Example:\n  portcullis duo check")]
    Duo(DuoCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  portcullis completions bash > /etc/bash_completion.d/portcullis")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages: portcullis(1) and one per subcommand, portcullis.toml(5)
    /// and pam_portcullis(8), under DIR/man1, man5 and man8.
    #[command(after_help = "Example:\n  portcullis man --out ./man")]
    Man {
        /// The directory (e.g. /usr/share/man).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Import formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFormat {
    /// mod_authn_otp users file.
    #[value(name = "mod_authn_otp")]
    ModAuthnOtp,
    /// pam_oath users.oath.
    #[value(name = "pam_oath")]
    PamOath,
    /// ~/.google_authenticator (google-authenticator-libpam, mod_authn_google).
    #[value(name = "google-authenticator")]
    GoogleAuthenticator,
    /// apache_2fa tokens.json.
    #[value(name = "apache_2fa")]
    Apache2fa,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// mod_authn_otp users file.
    #[value(name = "mod_authn_otp")]
    ModAuthnOtp,
    /// pam_oath users.oath.
    #[value(name = "pam_oath")]
    PamOath,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file; errors name the line.
    #[command(after_help = "Example:\n  portcullis --config /etc/portcullis/portcullis.toml config check")]
    Check,
    /// Print one Apache 2.4 snippet (contrib/apache) for this configuration, or write them all.
    #[command(
        after_help = "Examples:\n  portcullis config apache --out /etc/apache2/portcullis\n  portcullis config apache portcullis-provider.conf \\\n      > /etc/apache2/conf-available/portcullis.conf"
    )]
    Apache(SnippetArgs),
    /// Print one nginx snippet (contrib/nginx) for this configuration, or write them all.
    #[command(
        after_help = "Examples:\n  portcullis config nginx --out /etc/nginx/portcullis\n  portcullis config nginx portcullis-upstream.conf \\\n      > /etc/nginx/conf.d/portcullis.conf"
    )]
    Nginx(SnippetArgs),
    /// Print the Caddy snippet (contrib/caddy) for this configuration, or write it.
    #[command(
        after_help = "Examples:\n  portcullis config caddy portcullis.caddy > /etc/caddy/portcullis.caddy\n  portcullis config caddy --out /etc/caddy"
    )]
    Caddy(SnippetArgs),
    /// Print the Traefik dynamic configuration (contrib/traefik) for this configuration.
    #[command(
        after_help = "Examples:\n  portcullis config traefik portcullis.yml \\\n      > /etc/traefik/dynamic/portcullis.yml\n  portcullis config traefik --out /etc/traefik/dynamic"
    )]
    Traefik(SnippetArgs),
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Connect to the configured store (and `[state]` server): how fast each answers, how
    /// many users there are, or what is wrong in words (exit 2).
    #[command(after_help = "Example:\n  portcullis store check")]
    Check,
    /// Copy every user (tokens, counters, scratch codes, app passwords) from the configured
    /// store into a PostgreSQL database. Run again, it copies only what is missing and
    /// refuses (exit 2) to overwrite a user that differs there (used since the copy?).
    #[command(
        after_help = "Example (a database on this machine; elsewhere give --password-file and --ca-file):\n  portcullis store migrate --no-tls \\\n      --to postgres://portcullis@127.0.0.1/portcullis"
    )]
    Migrate {
        /// The PostgreSQL database: postgres://USER@HOST:PORT/DATABASE (no password in it).
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file whose first line is the database password.
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        /// The CA that signed the server's certificate (TLS, verify-full).
        #[arg(long, value_name = "PATH", conflicts_with = "no_tls")]
        ca_file: Option<PathBuf>,
        /// No TLS: only for a Unix socket or loopback.
        #[arg(long)]
        no_tls: bool,
    },
}

/// Which snippet `config apache|nginx|caddy|traefik` prints, or where it writes them all.
#[derive(Debug, Args)]
pub struct SnippetArgs {
    /// The snippet to print (file name, with or without `.conf`); none lists them.
    #[arg(conflicts_with = "out")]
    pub name: Option<String>,
    /// Write every snippet into this directory (created if missing; files 0644, replaced
    /// atomically), with the example site's includes pointing there.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// Token options shared by `user add` and `user token reset`.
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArgs {
    /// Counter-based (HOTP) token instead of time-based (TOTP).
    #[arg(long, conflicts_with = "totp")]
    pub hotp: bool,
    /// Time-based (TOTP) token (the default unless the config says hotp).
    #[arg(long)]
    pub totp: bool,
    /// Code length (6-10; default from [otp] digits).
    #[arg(long)]
    pub digits: Option<u32>,
    /// TOTP step in seconds (default from [otp] period).
    #[arg(long)]
    pub period: Option<u32>,
    /// HMAC hash: sha1, sha256 or sha512 (default from [otp] algorithm).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// A base32 secret to use instead of a random one (e.g. a hardware token's).
    #[command(flatten)]
    pub secret: SecretSource,
    /// Accept a secret shorter than 16 bytes (128 bits, RFC 4226's minimum): only for a
    /// hardware token that really has one.
    #[arg(long)]
    pub short_secret: bool,
    /// Also write the QR code as a PNG file (mode 0600).
    #[arg(long)]
    pub qr: Option<PathBuf>,
    /// Also write the QR code as an SVG file (mode 0600).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Do not draw the QR code in the terminal.
    #[arg(long)]
    pub no_terminal_qr: bool,
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with a new token; prints its otpauth:// URI and QR code once.
    #[command(
        after_help = "Examples:\n  printf '%s\\n' \"$PASS\" | portcullis user add alice --password-stdin\n  portcullis user add bob --hotp --digits 8 --qr bob.png --no-password\n  portcullis user add carol --no-password --secret-file yubikey.b32"
    )]
    Add {
        /// User name.
        name: String,
        /// Read the password (first line) from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// No password: the code alone is the credential (or a first factor is checked
        /// elsewhere, e.g. sshd keys).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        /// Check the password in the configured htpasswd/htdigest file instead.
        #[arg(long, conflicts_with_all = ["password_stdin", "no_password"])]
        external_password: bool,
        /// Check the password against the [ldap] server, where the person must exist (the
        /// name given may be their uid or e-mail; the server's name for them is stored).
        #[arg(long, conflicts_with_all = ["password_stdin", "no_password", "external_password"])]
        ldap: bool,
        /// Group membership (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Create no token now; send the user an enrollment link with `user invite`.
        #[arg(long)]
        no_token: bool,
        /// Approve logins with a Duo push ([duo]) instead of a code: no token is made
        /// (add one later with `user invite`; then the person may choose).
        #[arg(long, conflicts_with = "no_token")]
        duo: bool,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Print a one-time enrollment link: it shows a new QR code once and asks for a first
    /// code before the token replaces the old one.
    #[command(after_help = "Example:\n  portcullis user invite alice")]
    Invite {
        /// User name.
        name: String,
        /// A link to register a passkey or security key (instead of an authenticator app).
        #[arg(long)]
        passkey: bool,
    },
    /// List users with token type, failures and lock state.
    #[command(after_help = "Example:\n  portcullis user list")]
    List,
    /// Show one user (never the secret).
    #[command(after_help = "Example:\n  portcullis user show alice")]
    Show {
        /// User name.
        name: String,
    },
    /// Delete a user and its tokens.
    #[command(after_help = "Example:\n  portcullis user remove alice")]
    Remove {
        /// User name.
        name: String,
    },
    /// Lock a user: every attempt is refused until `unlock`.
    #[command(after_help = "Example:\n  portcullis user lock alice")]
    Lock {
        /// User name.
        name: String,
    },
    /// Unlock a user and clear the failure count.
    #[command(after_help = "Example:\n  portcullis user unlock alice")]
    Unlock {
        /// User name.
        name: String,
    },
    /// Set a new password.
    #[command(after_help = "Example:\n  printf '%s\\n' \"$PASS\" | portcullis user passwd alice --password-stdin")]
    Passwd {
        /// User name.
        name: String,
        /// Read the password (first line) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make 10 new one-time recovery codes (replacing old ones); shown once, stored hashed.
    #[command(after_help = "Example:\n  portcullis user scratch alice")]
    Scratch {
        /// User name.
        name: String,
    },
    /// Token management.
    #[command(subcommand, after_help = "Example:\n  portcullis user token reset alice")]
    Token(TokenCommand),
    /// Second factors that are not tokens (a Duo push).
    #[command(subcommand, after_help = "Example:\n  portcullis user factor add alice duo")]
    Factor(FactorCommand),
    /// Per-device app passwords for HTTP Basic clients that cannot send a code.
    #[command(subcommand, after_help = "Example:\n  portcullis user app-password list alice")]
    AppPassword(AppPasswordCommand),
}

/// `user factor` subcommands.
#[derive(Debug, Subcommand)]
pub enum FactorCommand {
    /// Give a user a second factor: `duo` approves their logins with a Duo push.
    #[command(after_help = "Example:\n  portcullis user factor add alice duo")]
    Add {
        /// User name.
        name: String,
        /// The factor.
        factor: FactorKind,
    },
    /// Take a second factor away from a user (a passkey by its label, see `user show`).
    #[command(
        after_help = "Examples:\n  portcullis user factor remove alice duo\n  portcullis user factor remove alice passkey laptop"
    )]
    Remove {
        /// User name.
        name: String,
        /// The factor.
        factor: FactorKind,
        /// Which passkey: its label (may be left out when the user has one).
        label: Option<String>,
    },
}

/// Second factors that are not tokens.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FactorKind {
    /// A Duo push (or a Duo passcode), through `[duo]`.
    Duo,
    /// A passkey or security key (WebAuthn); its owner registers it in a browser.
    Passkey,
}

/// `duo` subcommands.
#[derive(Debug, Subcommand)]
pub enum DuoCommand {
    /// Check the `[duo]` keys against Duo's /auth/v2/check and print the clock offset.
    #[command(after_help = "Example:\n  portcullis duo check")]
    Check,
}

/// `user app-password` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppPasswordCommand {
    /// Make a random app password for one device; shown once, stored as argon2id.
    #[command(after_help = "Example:\n  portcullis user app-password add alice phone-caldav")]
    Add {
        /// User name.
        name: String,
        /// What the device is (letters, digits, - and _).
        label: String,
    },
    /// List a user's app passwords (labels and dates only).
    #[command(after_help = "Example:\n  portcullis user app-password list alice")]
    List {
        /// User name.
        name: String,
    },
    /// Revoke one app password.
    #[command(after_help = "Example:\n  portcullis user app-password remove alice phone-caldav")]
    Remove {
        /// User name.
        name: String,
        /// Its label.
        label: String,
    },
}

/// `user token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the user's tokens with a new one and show its QR code.
    #[command(after_help = "Example:\n  portcullis user token reset alice --qr alice.png")]
    Reset {
        /// User name.
        name: String,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// Where a secret comes from: the command line (visible in /proc/*/cmdline and shell
/// history), standard input, or a file.
#[derive(Debug, Clone, Default, Args)]
pub struct SecretSource {
    /// The secret, base32 (any case, spaces allowed; hex with --hex where offered). Prefer
    /// --secret-stdin or --secret-file: command lines are visible to other users.
    #[arg(long, conflicts_with_all = ["secret_stdin", "secret_file"])]
    pub secret: Option<String>,
    /// Read the secret from the first line of standard input.
    #[arg(long, conflicts_with = "secret_file")]
    pub secret_stdin: bool,
    /// Read the secret from a file (its first line).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

/// Secret options of the `otp` tools.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// Where the secret comes from.
    #[command(flatten)]
    pub source: SecretSource,
    /// The secret is hex (as in mod_authn_otp and pam_oath users files).
    #[arg(long)]
    pub hex: bool,
}

/// Token type for the `otp` tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtpType {
    /// Time-based (RFC 6238).
    Totp,
    /// Counter-based (RFC 4226).
    Hotp,
    /// Mobile-OTP.
    Motp,
}

/// `otp` subcommands.
#[derive(Debug, Subcommand)]
pub enum OtpCommand {
    /// Print the code for a secret at a time or counter.
    #[command(
        after_help = "Examples:\n  portcullis otp code --secret-file alice.key\n  printf '%s\\n' \"$KEY\" | \\\n      portcullis otp code --secret-stdin --hex --type hotp \\\n      --counter 5 --digits 8\n  portcullis otp code --secret JBSWY3DPEHPK3PXP\n  portcullis otp code --secret-file token.hex --hex \\\n      --type motp --pin-file token.pin"
    )]
    Code {
        #[command(flatten)]
        secret: SecretArgs,
        /// Token type.
        #[arg(long = "type", value_enum, default_value = "totp")]
        kind: OtpType,
        /// Unix time for totp/motp (default: now).
        #[arg(long, conflicts_with = "counter")]
        time: Option<i64>,
        /// Counter for hotp (or event motp).
        #[arg(long)]
        counter: Option<u64>,
        /// Code length.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// TOTP step in seconds (motp: 10).
        #[arg(long)]
        period: Option<u32>,
        /// HMAC hash: sha1, sha256, sha512.
        #[arg(long, default_value = "sha1")]
        algorithm: String,
        /// mOTP PIN (visible to other users on the command line: prefer --pin-file).
        #[arg(long, default_value = "", conflicts_with = "pin_file")]
        pin: String,
        /// Read the mOTP PIN from a file (its first line).
        #[arg(long, value_name = "PATH")]
        pin_file: Option<PathBuf>,
    },
    /// Print an otpauth:// URI for a secret.
    #[command(after_help = "Example:\n  portcullis otp uri --secret JBSWY3DPEHPK3PXP --account alice --issuer ACME")]
    Uri {
        #[command(flatten)]
        secret: SecretArgs,
        /// Account name shown in the app.
        #[arg(long)]
        account: String,
        /// Issuer shown in the app.
        #[arg(long)]
        issuer: Option<String>,
        /// totp or hotp.
        #[arg(long = "type", value_enum, default_value = "totp")]
        kind: OtpType,
        /// Code length.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// TOTP step in seconds.
        #[arg(long, default_value_t = 30)]
        period: u32,
        /// HOTP initial counter.
        #[arg(long, default_value_t = 0)]
        counter: u64,
        /// HMAC hash.
        #[arg(long, default_value = "sha1")]
        algorithm: String,
    },
    /// Show a secret in base32 and hex (what `oathtool --verbose` is used for).
    #[command(
        after_help = "Examples:\n  portcullis otp secret --secret JBSWY3DPEHPK3PXP\n  portcullis otp secret --hex --secret 48656c6c6f21deadbeef"
    )]
    Secret {
        #[command(flatten)]
        secret: SecretArgs,
    },
}
