//! Tests of `sticky.rs`, kept apart so the code reads in one screenful or two.

use super::*;
use std::time::Duration;

fn sticky(secrets: &[&[u8]], max_life: Option<u64>, max_idle: Option<u64>) -> Sticky {
    let config = StickyConfig {
        cookie: "sy".into(),
        secrets: secrets.iter().map(|s| s.to_vec()).collect(),
        max_life: max_life.map(Duration::from_secs),
        max_idle: max_idle.map(Duration::from_secs),
        path: "/".into(),
        domain: None,
        secure: true,
        fleet_secret: false,
    };
    Sticky::new(&config, "pool", &Metrics::new(), &Arc::default())
}

fn value(cookie: &HeaderValue) -> String {
    let text = cookie.to_str().unwrap();
    text["sy=".len()..text.find(';').unwrap()].to_owned()
}

const A: &[u8] = b"0123456789abcdef0123456789abcdef";
const B: &[u8] = b"fedcba9876543210fedcba9876543210";

#[test]
fn tokens_round_trip_and_never_verify_under_another_key() {
    let one = sticky(&[A], None, None);
    let cookie = one.cookie("web-1", 1_000, 1_000).unwrap();
    assert!(
        cookie
            .to_str()
            .unwrap()
            .contains("; Path=/; HttpOnly; SameSite=Lax; Secure")
    );
    let token = value(&cookie);
    assert!(matches!(one.read(&token, 1_001),
        Binding::Bound { ref backend, start: 1_000, current: true, .. } if &**backend == "web-1"));
    assert_eq!(
        sticky(&[B], None, None).read(&token, 1_001),
        Binding::Invalid
    );
    // Every name and time round-trips; a changed byte anywhere is refused.
    for (n, name) in ["a", "web.1", "ünï", "x".repeat(200).as_str()]
        .iter()
        .enumerate()
    {
        let token = value(&one.cookie(name, n as u64, n as u64 + 5).unwrap());
        assert!(
            matches!(one.read(&token, 10), Binding::Bound { ref backend, .. } if &**backend == *name)
        );
        for i in 0..token.len() {
            let mut forged = token.clone().into_bytes();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            if forged != token {
                assert_eq!(one.read(&forged, 10), Binding::Invalid, "{forged}");
            }
        }
    }
}

#[test]
fn the_previous_key_is_accepted_and_marked_for_re_signing() {
    let old = sticky(&[A], None, None);
    let rotated = sticky(&[B, A], None, None);
    let token = value(&old.cookie("web-1", 1_000, 1_000).unwrap());
    assert!(matches!(
        rotated.read(&token, 1_001),
        Binding::Bound { current: false, .. }
    ));
    assert!(rotated.refresh(1_000, false, 1_001));
}

#[test]
fn sessions_end_after_their_life_or_idleness() {
    let s = sticky(&[A], Some(100), Some(10));
    let token = value(&s.cookie("web-1", 1_000, 1_050).unwrap());
    assert!(matches!(s.read(&token, 1_059), Binding::Bound { .. }));
    assert_eq!(s.read(&token, 1_060), Binding::Invalid, "idle 10 s");
    let fresh = value(&s.cookie("web-1", 1_000, 1_099).unwrap());
    assert_eq!(s.read(&fresh, 1_100), Binding::Invalid, "100 s old");
    assert!(!s.refresh(1_050, true, 1_050));
    assert!(s.refresh(1_050, true, 1_051), "a tenth of max_idle");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any backend name and times: the token reads back as signed, and never verifies
    /// under another key.
    #[test]
    fn any_token_round_trips_and_never_verifies_under_another_key(
        name in "\\PC{1,40}",
        start in 0u64..4_000_000_000,
        used in 0u64..1_000_000,
        secret in proptest::collection::vec(proptest::num::u8::ANY, 32..64),
        other in proptest::collection::vec(proptest::num::u8::ANY, 32..64),
    ) {
        proptest::prop_assume!(secret != other);
        let signer = sticky(&[&secret], None, None);
        let seen = start + used;
        let cookie = signer.cookie(&name, start, seen).unwrap();
        let token = value(&cookie);
        let read = signer.read(&token, seen);
        let expected = Binding::Bound {
            backend: name.as_str().into(),
            start,
            seen,
            current: true,
        };
        proptest::prop_assert_eq!(read, expected);
        proptest::prop_assert_eq!(sticky(&[&other], None, None).read(&token, seen), Binding::Invalid);
    }
}
