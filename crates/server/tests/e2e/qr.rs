//! QR codes decode (with zbarimg) to exactly the URI that was encoded.

use crate::harness::*;
use std::process::Command;

fn zbar(path: &std::path::Path) -> String {
    require_tool("zbarimg");
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "zbarimg could not read {}", path.display());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn png_from_user_add_decodes_to_the_printed_uri() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("");
    let png = env.path().join("bob.png");
    let uri = env.add_user("bob", "pw", &["--hotp", "--digits", "8", "--qr", png.to_str().unwrap()]);
    assert_eq!(zbar(&png), uri);
    assert_eq!(std::fs::metadata(&png).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn qr_command_round_trips_awkward_uris() {
    let env = Env::new("");
    for uri in [
        "otpauth://totp/ACME%20Co:alice%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30",
        "otpauth://hotp/%C3%89cole:j%C3%BCrgen?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=%C3%89cole&algorithm=SHA512&digits=8&counter=42",
    ] {
        let png = env.path().join("q.png");
        let svg = env.path().join("q.svg");
        env.ok(
            &[
                "qr",
                uri,
                "--png",
                png.to_str().unwrap(),
                "--svg",
                svg.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(zbar(&png), uri);
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    }
    let bad = env.run(&["qr", "otpauth://totp/x?secret=not*base32"], None);
    assert_eq!(bad.status.code(), Some(2));
}
