//! ACME settings checked without contacting the CA: each mistake reported at its line and
//! column, naming the field.

use crate::support::config::assert_problem;
use switchyard::config::{self, AcmeStorage, Challenge, KeyType};

use crate::support::config::VALID_TAIL as TAIL;

/// A plain listener and a TLS one with the ACME entries in `acme`, then `extra`.
fn with_acme(acme: &str, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n{acme}\n{extra}\n{TAIL}"
    )
}

#[test]
fn a_listener_with_only_acme_certificates_is_valid_with_the_defaults() {
    let text = with_acme(
        "[[listeners.tls.acme]]\nnames = [\"Example.COM\", \"www.example.com\"]\n",
        "",
    );
    let config = config::parse(&text, "x.toml").unwrap_or_else(|e| panic!("{e}"));
    let acme = config.acme.expect("[acme] defaults");
    assert_eq!(
        acme.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(
        acme.storage,
        AcmeStorage::Directory("/var/lib/switchyard/acme".into())
    );
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(tls.acme[0].names, ["example.com", "www.example.com"]);
    assert_eq!(
        (tls.acme[0].challenge, tls.acme[0].key_type),
        (Challenge::Http01, KeyType::EcdsaP256)
    );
}

#[test]
fn the_account_settings_are_read_and_given_to_each_certificate() {
    let text = with_acme(
        "[[listeners.tls.acme]]\nnames = [\"a.example.com\"]\n[[listeners.tls.acme]]\nnames = [\"b.example.com\"]\nkey_type = \"ecdsa-p256\"\n",
        "[acme]\ndirectory = \"letsencrypt-staging\"\ncontact = \"ops@example.com\"\nstorage = \"state/acme\"\nchallenge = \"tls-alpn-01\"\nkey_type = \"rsa2048\"\neab = { kid = \"kid-1\", hmac_key = \"c2VjcmV0LWtleQ\" }\n",
    );
    let config = config::parse(&text, "/etc/switchyard/x.toml").unwrap_or_else(|e| panic!("{e}"));
    let acme = config.acme.unwrap();
    assert!(acme.directory.contains("staging"));
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(
        acme.storage,
        AcmeStorage::Directory("/etc/switchyard/state/acme".into())
    );
    assert_eq!(acme.eab.unwrap().hmac_key, b"secret-key");
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(tls.acme[0].challenge, Challenge::TlsAlpn01);
    assert_eq!(tls.acme[0].key_type, KeyType::Rsa2048);
    assert_eq!(tls.acme[1].key_type, KeyType::EcdsaP256);
}

#[test]
fn acme_mistakes_are_reported_at_their_place() {
    let names = |list: &str| format!("[[listeners.tls.acme]]\nnames = {list}\n");
    // Line 10 is the `names` line, line 11 the next key, line 13 the first key of [acme].
    assert_problem(
        &with_acme(&names("[\"*.example.com\"]"), ""),
        "10:10:",
        "wildcard",
    );
    assert_problem(
        &with_acme(&names("[\"example.com\", \"10.0.0.1\"]"), ""),
        "10:25:",
        "not a DNS name",
    );
    assert_problem(
        &with_acme(&names("[]"), ""),
        "10:9:",
        "at least one DNS name",
    );
    assert_problem(
        &with_acme(
            &format!(
                "{}{}",
                names("[\"a.example.com\"]"),
                names("[\"A.example.com\"]")
            ),
            "",
        ),
        "12:10:",
        "listed by another ACME certificate",
    );
    let one = names("[\"a.example.com\"]");
    assert_problem(
        &with_acme(&format!("{one}challenge = \"dns-01\"\n"), ""),
        "11:13:",
        "listeners[1].tls.acme[0].challenge: \"dns-01\" is not \"http-01\" or \"tls-alpn-01\"",
    );
    assert_problem(
        &with_acme(&one, "[acme]\ndirectory = \"http://ca.example.com/dir\"\n"),
        "13:13:",
        "acme.directory",
    );
    assert_problem(
        &with_acme(&one, "[acme]\ncontact = \"nobody\"\n"),
        "13:11:",
        "acme.contact",
    );
    assert_problem(
        &with_acme(&one, "[acme]\nstorage = \"redis\"\n"),
        "13:11:",
        "no [fleet]",
    );
    assert_problem(
        &with_acme(&one, "[acme]\nca = \"missing-ca.pem\"\n"),
        "13:6:",
        "acme.ca: missing-ca.pem",
    );
    assert_problem(
        &with_acme(
            &one,
            "[acme]\neab = { kid = \"k\", hmac_key = \"not base64!\" }\n",
        ),
        "13:",
        "acme.eab.hmac_key",
    );
    assert_problem(
        &with_acme(&one, "[acme]\nrenew = true\n"),
        "13:1:",
        "unknown",
    );
}

#[test]
fn http01_without_a_plain_listener_is_an_error_and_tls_alpn01_is_not() {
    let tls_only = |acme: &str| {
        format!(
            "[[listeners]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n[[listeners.tls.acme]]\nnames = [\"a.example.com\"]\n{acme}{TAIL}"
        )
    };
    assert_problem(
        &tls_only(""),
        "5:1:",
        "http-01 challenge is answered on a plain listener",
    );
    config::parse(&tls_only("challenge = \"tls-alpn-01\"\n"), "x.toml")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn check_lists_each_acme_certificate_and_the_directory() {
    let text = with_acme(
        "[[listeners.tls.acme]]\nnames = [\"a.example.com\", \"b.example.com\"]\nchallenge = \"tls-alpn-01\"\n",
        "[acme]\ndirectory = \"letsencrypt-staging\"\n",
    );
    let path = crate::support::temp_config(&text);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("switchyard runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("    acme a.example.com, b.example.com by tls-alpn-01\n"),
        "{printed}"
    );
    assert!(
        printed.contains("acme: https://acme-staging-v02.api.letsencrypt.org/directory\n"),
        "{printed}"
    );
}
