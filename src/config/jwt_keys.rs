//! JWT verifying keys from a JWKS document or one PEM public key: read by the config check
//! (a file) and by the background fetcher (a URL), and used by a route's JWT policy.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The kind of key an algorithm verifies with; a token's algorithm must match its key's, so
/// that no key is ever used with an algorithm of another kind (RS/HS confusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA (RS*, PS*).
    Rsa,
    /// NIST curves (ES256, ES384).
    Ec,
    /// Ed25519 (EdDSA).
    Ed,
    /// A shared secret (HS*): never accepted.
    Secret,
}

impl KeyKind {
    /// The kind of key `alg` verifies with.
    pub fn of(alg: Algorithm) -> Self {
        use Algorithm::*;
        match alg {
            HS256 | HS384 | HS512 => Self::Secret,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Self::Rsa,
            ES256 | ES384 => Self::Ec,
            EdDSA => Self::Ed,
        }
    }
}

/// One verifying key.
#[derive(Clone)]
pub struct JwtKey {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// The only algorithm it verifies, when the key set names one.
    pub alg: Option<Algorithm>,
    /// What kind of key it is.
    pub kind: KeyKind,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey({:?}, {:?})", self.kid, self.kind)
    }
}

/// The keys of a JWKS document (`{"keys": [...]}`) or of one PEM public key. Keys for
/// encryption (`"use": "enc"`), symmetric keys and keys this build cannot use are skipped;
/// a document that leaves none is an error.
pub fn parse(text: &str) -> Result<Vec<JwtKey>, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        let bytes = text.as_bytes();
        let (key, kind) = DecodingKey::from_ec_pem(bytes)
            .map(|k| (k, KeyKind::Ec))
            .or_else(|_| DecodingKey::from_rsa_pem(bytes).map(|k| (k, KeyKind::Rsa)))
            .or_else(|_| DecodingKey::from_ed_pem(bytes).map(|k| (k, KeyKind::Ed)))
            .map_err(|_| "not a PEM public key (RSA, EC or Ed25519)".to_owned())?;
        return Ok(vec![JwtKey {
            kid: None,
            alg: None,
            kind,
            key,
        }]);
    }
    let set: JwkSet =
        serde_json::from_str(text).map_err(|err| format!("not a JWKS document: {err}"))?;
    let keys: Vec<JwtKey> = set.keys.iter().filter_map(key_of).collect();
    if keys.is_empty() {
        return Err("the key set holds no public signing key".to_owned());
    }
    Ok(keys)
}

fn key_of(jwk: &Jwk) -> Option<JwtKey> {
    use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(_) => KeyKind::Ec,
        AlgorithmParameters::OctetKeyPair(_) => KeyKind::Ed,
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    if alg.is_some_and(|a| KeyKind::of(a) != kind) {
        return None;
    }
    Some(JwtKey {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_public_key_or_a_key_set_gives_its_signing_keys() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let keys = parse(&pair.public_key_pem()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kind, KeyKind::Ec);
        let raw = pair.public_key_raw();
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        let set = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "sig", "x": b64(&raw[1..33]), "y": b64(&raw[33..])},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": b64(&raw[1..33]), "y": b64(&raw[33..])},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        ]});
        let keys = parse(&set.to_string()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(
            kids,
            [Some("sig")],
            "encryption and symmetric keys are left out"
        );
        assert!(parse(r#"{"keys": []}"#).is_err());
        assert!(parse("not a key").is_err());
    }
}
