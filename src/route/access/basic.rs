//! Basic auth: `Authorization: Basic` checked against an htpasswd file's bcrypt and argon2
//! hashes. A hash takes milliseconds by design, so a verified pair is remembered (as a digest,
//! never the password) until the next reload, as Caddy does: the request path then pays one
//! SHA-256 and one lookup.

use crate::config::BasicAuthConfig;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;

/// How many verified pairs are remembered; past it, each is verified every time.
const REMEMBERED: usize = 4096;

/// A route's basic auth, compiled.
#[derive(Debug)]
pub struct BasicGate {
    /// `Basic realm="…", charset="UTF-8"`.
    pub challenge: HeaderValue,
    users: HashMap<Box<str>, Box<str>>,
    verified: papaya::HashSet<[u8; 32]>,
}

/// What a request's credentials are worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A pair verified before.
    Known,
    /// Not verified yet: verify off the runtime's threads.
    Unknown(Credentials),
    /// No usable credentials at all.
    Missing,
}

/// A user and password as sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
    digest: [u8; 32],
}

impl BasicGate {
    /// Compiles `config`.
    pub fn new(config: &BasicAuthConfig) -> Self {
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm);
        Self {
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or(HeaderValue::from_static("Basic")),
            users: config
                .users
                .iter()
                .map(|(user, hash)| (user.as_str().into(), hash.as_str().into()))
                .collect(),
            verified: papaya::HashSet::new(),
        }
    }

    /// Reads the request's credentials.
    pub fn look(&self, headers: &HeaderMap) -> Verdict {
        let Some(credentials) = credentials(headers) else {
            return Verdict::Missing;
        };
        if self.verified.pin().contains(&credentials.digest) {
            Verdict::Known
        } else {
            Verdict::Unknown(credentials)
        }
    }

    /// Verifies `credentials` against the file's hash (blocking: milliseconds). An unknown
    /// user costs as much as a known one, so timing does not tell which users exist.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        let hash = self.users.get(credentials.user.as_str());
        let valid = verify_hash(
            credentials.password.as_bytes(),
            hash.map_or(UNKNOWN_USER, |h| h),
        ) && hash.is_some();
        if valid {
            let verified = self.verified.pin();
            if verified.len() < REMEMBERED {
                verified.insert(credentials.digest);
            }
        }
        valid
    }
}

/// A bcrypt hash no password matches (`htpasswd -B`'s cost): checked for unknown users.
const UNKNOWN_USER: &str = "$2y$05$8j3.pUsoB2Vr0AnXbAJvgu9ZmJbWcqyZwFz0pV1rJ8qQk9lN2pWbS";

fn verify_hash(password: &[u8], hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier as _;
        argon2::Argon2::default()
            .verify_password(password, hash)
            .is_ok()
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &decoded);
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
        digest: digest.as_ref().try_into().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> BasicGate {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicGate::new(&BasicAuthConfig {
            realm: "staff".into(),
            users: vec![("alice".into(), hash)],
            file: "users".into(),
        })
    }

    fn basic(pair: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_verified_pair_is_known_afterwards_and_a_wrong_one_never() {
        let gate = gate();
        let Verdict::Unknown(good) = gate.look(&basic("alice:s3cret")) else {
            panic!("unverified yet")
        };
        assert!(gate.verify(&good));
        assert_eq!(gate.look(&basic("alice:s3cret")), Verdict::Known);
        let Verdict::Unknown(bad) = gate.look(&basic("alice:guess")) else {
            panic!("never verified")
        };
        assert!(!gate.verify(&bad));
        let Verdict::Unknown(nobody) = gate.look(&basic("mallory:s3cret")) else {
            panic!("unknown user")
        };
        assert!(!gate.verify(&nobody));
        assert_eq!(gate.look(&HeaderMap::new()), Verdict::Missing);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(gate.look(&bearer), Verdict::Missing);
    }

    #[test]
    fn argon2_hashes_verify_too() {
        use argon2::password_hash::PasswordHasher;
        let hash: argon2::PasswordHash = argon2::Argon2::default()
            .hash_password_with_salt(b"s3cret", b"some salt, 16+ bytes")
            .unwrap();
        let hash = hash.to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_hash(b"s3cret", &hash));
        assert!(!verify_hash(b"guess", &hash));
    }

    #[test]
    fn the_unknown_user_hash_is_a_valid_bcrypt_hash() {
        assert_eq!(bcrypt::verify("", UNKNOWN_USER).ok(), Some(false));
    }
}
