//! JWT validation with keys from a JWKS endpoint started in the test: valid tokens (ES256 and
//! RS256) pass with a claim copied as a header; expired, wrong audience, `alg: none`, and
//! HS256 signed with the RSA public key are refused with RFC 6750's challenge; a token whose
//! `kid` is unknown triggers exactly one early refresh of the key set.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key with its JWK.
struct Signer {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    jwk: serde_json::Value,
    /// The public key as PEM (the RSA one is used as an HMAC secret by an attacker).
    public_pem: String,
}

fn ec_signer(kid: &'static str) -> Signer {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = pair.public_key_raw();
    let (x, y) = raw[1..].split_at(32);
    Signer {
        kid,
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "alg": "ES256", "x": b64(x), "y": b64(y)}),
        public_pem: pair.public_key_pem(),
    }
}

fn rsa_signer(kid: &'static str) -> Signer {
    let dir = temp_dir();
    let key = dir.join("rsa.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let path = key.to_str().unwrap();
    run(&["genrsa", "-out", path, "2048"]);
    let modulus = run(&["rsa", "-in", path, "-noout", "-modulus"]);
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let public_pem = run(&["rsa", "-in", path, "-pubout"]);
    Signer {
        kid,
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap()).unwrap(),
        jwk: serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&n), "e": "AQAB"}),
        public_pem,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed by `signer` with these claims over the defaults (issuer, audience, an hour
/// to live, subject alice).
fn token(signer: &Signer, overrides: serde_json::Value) -> String {
    let mut claims = serde_json::json!({"iss": "https://idp.test", "aud": "api",
        "sub": "alice", "exp": now() + 3600, "iat": now()});
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = Header::new(signer.alg);
    header.kid = Some(signer.kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &signer.key).unwrap()
}

/// A JWKS endpoint serving what `keys` holds now; counts its fetches.
async fn jwks_server(keys: Arc<Mutex<Vec<serde_json::Value>>>) -> (SocketAddr, Arc<AtomicUsize>) {
    crate::support::upstream::serve_fn(move |_| {
        let body = serde_json::json!({"keys": *keys.lock().unwrap()}).to_string();
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    })
    .await
}

async fn get_bearer(proxy: &TestProxy, token: &str) -> Answer {
    let request = Request::get(proxy.url("/headers"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-user", "root")
        .body(Full::<Bytes>::default())
        .unwrap();
    send(&client(), request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_against_a_fetched_key_set() {
    let up = Upstream::start("up").await;
    let (ec, rsa, late) = (ec_signer("a"), rsa_signer("r"), ec_signer("b"));
    let keys = Arc::new(Mutex::new(vec![ec.jwk.clone(), rsa.jwk.clone()]));
    let (jwks, fetches) = jwks_server(Arc::clone(&keys)).await;
    let config = ConfigBuilder::new()
        .set("reload.watch", false)
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("r", |r| {
            r.set("pool", "p")
                .set(
                    "jwt.jwks_url",
                    format!("http://{jwks}/.well-known/jwks.json"),
                )
                .set("jwt.issuer", "https://idp.test")
                .set("jwt.audience", vec!["api".to_owned()])
                .set("jwt.claims_to_headers.sub", "X-User")
                .set("jwt.cookie", "session")
        });
    let proxy = TestProxy::start(&config.toml()).await;
    // The key set arrives in the background; until then tokens are refused.
    poll_until(DEADLINE, "the key set fetched", || async {
        (get_bearer(&proxy, &token(&ec, serde_json::json!({})))
            .await
            .status
            == StatusCode::OK)
            .then_some(())
    })
    .await;
    let ok = get_bearer(&proxy, &token(&ec, serde_json::json!({}))).await;
    assert!(ok.body.contains("x-user: alice"), "{}", ok.body);
    assert!(
        !ok.body.contains("x-user: root"),
        "the client's own X-User is dropped"
    );
    let rs = get_bearer(&proxy, &token(&rsa, serde_json::json!({}))).await;
    assert_eq!(rs.status, StatusCode::OK);
    // The same token in the cookie the policy names.
    let by_cookie = Request::get(proxy.url("/"))
        .header(
            "cookie",
            format!(
                "theme=dark; session={}",
                token(&ec, serde_json::json!({"sub": "carol"}))
            ),
        )
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(&client(), by_cookie).await.status, StatusCode::OK);

    let refused = |answer: &Answer, why: &str| {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{why}");
        let challenge = answer.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{why}: {challenge}"
        );
    };
    let expired = token(&ec, serde_json::json!({"exp": now() - 3600}));
    refused(&get_bearer(&proxy, &expired).await, "expired");
    let elsewhere = token(&ec, serde_json::json!({"aud": "billing"}));
    refused(&get_bearer(&proxy, &elsewhere).await, "wrong audience");
    let claims = b64(
        serde_json::json!({"sub": "alice", "aud": "api", "iss": "https://idp.test",
        "exp": now() + 3600})
        .to_string()
        .as_bytes(),
    );
    let none = format!(
        "{}.{claims}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"a"}"#)
    );
    refused(&get_bearer(&proxy, &none).await, "alg none");
    // The classic confusion: HS256 with the RSA public key as the shared secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r".to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "admin", "aud": "api", "iss": "https://idp.test",
            "exp": now() + 3600}),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    refused(&get_bearer(&proxy, &forged).await, "HS256 with the RSA key");
    let missing = get_with_no_token(&proxy).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(
        up.requests(),
        4,
        "only the valid tokens reached the backend (the poll's and three more)"
    );

    // A new key at the provider: the first token with its kid is refused and asks for one
    // early refresh, after which it passes; the many requests meanwhile ask for no more.
    let before = fetches.load(Ordering::SeqCst);
    keys.lock().unwrap().push(late.jwk.clone());
    let fresh = token(&late, serde_json::json!({}));
    refused(&get_bearer(&proxy, &fresh).await, "unknown kid");
    poll_until(DEADLINE, "the new key fetched", || async {
        (get_bearer(&proxy, &fresh).await.status == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before + 1,
        "exactly one early refresh"
    );
}

async fn get_with_no_token(proxy: &TestProxy) -> Answer {
    let request = Request::get(proxy.url("/"))
        .body(Full::<Bytes>::default())
        .unwrap();
    send(&client(), request).await
}

#[tokio::test]
async fn a_jwt_policy_refuses_hmac_algorithms_at_check() {
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("p").backend("up", closed_port(), 1))
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("jwt.jwks_url", "https://idp.test/jwks.json")
                .set("jwt.algorithms", vec!["HS256".to_owned()])
        });
    let err = switchyard::config::parse(&config.toml(), "switchyard.toml")
        .expect_err("HS256 is not a public-key algorithm");
    assert!(
        err.to_string().contains("routes[0].jwt.algorithms"),
        "{err}"
    );
}
