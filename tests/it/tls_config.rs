//! TLS settings in the config file: every certificate problem is reported by `switchyard check`
//! and by validation with the file's line and column, the field and the certificate file's
//! reason; expired certificates load (with a warning) as NGINX and HAProxy do.

use crate::support::tls::{Leaf, Pki};
use std::path::Path;
use switchyard::config;

const TAIL: &str = "[[routes]]\nname = \"r\"\npool = \"p\"\n\n[[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";

fn config_with(certificates: &[(&Path, &Path)], tls_settings: &str) -> String {
    let mut out = format!(
        "[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n{tls_settings}\n"
    );
    for (cert, key) in certificates {
        out += &format!(
            "[[listeners.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    out + TAIL
}

use crate::support::config::problems;

#[test]
fn missing_malformed_and_mismatched_files_are_reported_with_position_field_and_reason() {
    let pki = Pki::new();
    let good = pki.leaf("good", &["localhost"]);
    let other = pki.leaf("other", &["localhost"]);
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let missing = pki.dir.join("missing.pem");
    let cases: [(&Path, &Path, &str, &str); 4] = [
        (
            &missing,
            &good.key,
            "certificates[0].cert",
            "missing.pem: cannot read: No such file",
        ),
        (
            &garbage,
            &good.key,
            "certificates[0].cert",
            "garbage.pem: no CERTIFICATE block",
        ),
        (
            &good.cert,
            &garbage,
            "certificates[0].key",
            "garbage.pem: no PEM block of the expected kind",
        ),
        (
            &good.cert,
            &other.key,
            "certificates[0].key",
            "the key does not belong to the certificate",
        ),
    ];
    for (cert, key, field, reason) in cases {
        let text = config_with(&[(cert, key)], "");
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let at = if field.ends_with("cert") {
            "7:8"
        } else {
            "8:7"
        };
        assert!(
            problems[0].starts_with(&format!("{at}: listeners[0].tls.{field}: "))
                && problems[0].contains(reason),
            "{problems:?}"
        );
    }
}

#[test]
fn bad_tls_settings_name_their_field() {
    let pki = Pki::new();
    let Leaf { cert, key, .. } = pki.leaf("good", &["localhost"]);
    let text = config_with(
        &[(&cert, &key)],
        "min_version = \"1.1\"\nalpn = [\"h3\"]\nhandshake_timeout = \"soon\"",
    );
    let problems = problems(&text).join("\n");
    for needle in [
        "5:15: listeners[0].tls.min_version: \"1.1\" is not \"1.2\" or \"1.3\"",
        "6:9: listeners[0].tls.alpn: \"h3\" is not \"h2\" or \"http/1.1\"",
        "7:21: listeners[0].tls.handshake_timeout:",
    ] {
        assert!(
            problems.contains(needle),
            "{needle} missing from:\n{problems}"
        );
    }
    let none = "[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\n"
        .to_owned()
        + TAIL;
    assert!(problems_of(&none).contains("a TLS listener needs at least one"));
    let redirect = format!(
        "[[listeners]]\nname = \"r\"\nbind = \"127.0.0.1:0\"\nredirect_to_https = true\nhttps_port = 70000\n{TAIL}"
    );
    assert!(problems_of(&redirect).contains("5:14: listeners[0].https_port: must be a port"));
}

fn problems_of(text: &str) -> String {
    problems(text).join("\n")
}

#[test]
fn an_expired_certificate_loads() {
    let pki = Pki::new();
    let leaf = pki.expired_leaf("expired", &["old.test"]);
    let config = config::parse(&config_with(&[(&leaf.cert, &leaf.key)], ""), "x.toml")
        .unwrap_or_else(|err| panic!("{err}"));
    let tls = config.listeners[0].tls.as_ref().expect("TLS listener");
    assert_eq!(tls.certificates[0].names, ["old.test"]);
    assert!(tls.certificates[0].not_after < std::time::SystemTime::now());
}

#[test]
fn relative_certificate_paths_are_relative_to_the_config_file() {
    let pki = Pki::new();
    let leaf = pki.leaf("relative", &["localhost"]);
    let text = config_with(
        &[(Path::new("relative.pem"), Path::new("relative-key.pem"))],
        "",
    );
    let path = pki.dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let config = config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let tls = config.listeners[0].tls.as_ref().expect("TLS listener");
    assert_eq!(tls.certificates[0].cert_path, leaf.cert);
}

#[test]
fn switchyard_check_reports_a_broken_certificate_and_exits_1() {
    let pki = Pki::new();
    let good = pki.leaf("good", &["localhost"]);
    let other = pki.leaf("other", &["localhost"]);
    let path = pki.dir.join("switchyard.toml");
    std::fs::write(&path, config_with(&[(&good.cert, &other.key)], "")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run switchyard check");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:8:7: listeners[0].tls.certificates[0].key: {}: the key does not belong to the certificate",
            path.display(),
            other.key.display()
        )),
        "{stderr}"
    );
}

/// A plain listener and one pool whose own settings (before the backend) are `pool`.
fn upstream_config(pool: &str) -> String {
    format!(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\npool = \"p\"\n\n[[pools]]\nname = \"p\"\n{pool}\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\nmax_connections = 0\n"
    )
}

#[test]
fn bad_upstream_connection_settings_name_their_field() {
    let h2_without_tls = problems_of(&upstream_config("protocol = \"h2\""));
    assert!(
        h2_without_tls.contains(
            "10:12: pools[0].protocol: \"h2\" is HTTP/2 over TLS and needs a [pools[0].tls] table"
        ),
        "{h2_without_tls}"
    );
    assert!(
        h2_without_tls.contains("pools[0].backends[0].max_connections: must be at least 1, got 0"),
        "{h2_without_tls}"
    );
    let h2c_with_tls = problems_of(&upstream_config(
        "protocol = \"h2c\"\n[pools.tls]\ninsecure_skip_verify = true",
    ));
    assert!(h2c_with_tls.contains("pools[0].protocol: \"h2c\" is HTTP/2 without TLS"));
    let missing_ca = problems_of(&upstream_config(
        "[pools.tls]\nca = \"/nonexistent/ca.pem\"",
    ));
    assert!(
        missing_ca.contains("11:6: pools[0].tls.ca: /nonexistent/ca.pem: cannot read"),
        "{missing_ca}"
    );
    let pki = Pki::new();
    let leaf = pki.leaf("client", &["client.test"]);
    let half = problems_of(&upstream_config(&format!(
        "[pools.tls]\ncert = {:?}",
        leaf.cert.display().to_string()
    )));
    assert!(
        half.contains("pools[0].tls: a client certificate needs both cert and key"),
        "{half}"
    );
    let grpc_over_http1 = problems_of(&upstream_config("[pools.health_check]\ntype = \"grpc\""));
    assert!(
        grpc_over_http1.contains(
            "pools[0].health_check.type: \"grpc\" probes need protocol = \"h2\" or \"h2c\""
        ),
        "{grpc_over_http1}"
    );
    let idle = problems_of(&upstream_config("max_idle_per_backend = 5000"));
    assert!(
        idle.contains("pools[0].max_idle_per_backend: must be between 0 and 1024"),
        "{idle}"
    );
}

#[test]
fn switchyard_check_warns_of_a_certificate_expiring_within_14_days() {
    let pki = Pki::new();
    let soon = pki.leaf_expiring_in("soon", &["localhost"], 10);
    let path = pki.dir.join("switchyard.toml");
    std::fs::write(&path, config_with(&[(&soon.cert, &soon.key)], "")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run switchyard check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: listener https: certificate")
            && stderr.contains("expires within 14 days"),
        "{stderr}"
    );
}
