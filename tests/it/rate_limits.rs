//! Local rate limits on real connections: ten clients for ten seconds against 50/s with a
//! burst of 10, the refusal's fields, a dry run, and keys by header.

use crate::access::{get_with, proxy_with};
use crate::support::*;
use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use toml::Value;

/// A rate-limit table as a TOML value.
fn rule(pairs: &[(&str, Value)]) -> Value {
    let mut table = toml::Table::new();
    for (key, value) in pairs {
        table.insert((*key).to_owned(), value.clone());
    }
    Value::Array(vec![Value::Table(table)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_for_ten_seconds_at_50_per_second_burst_10_get_about_500() {
    let up = Upstream::start("up").await;
    let limit = rule(&[
        ("rate", "50/s".into()),
        ("burst", 10.into()),
        ("legacy_headers", true.into()),
    ]);
    let proxy = proxy_with(&up, |c| c, |r| r.set("rate_limit", limit)).await;
    let url = proxy.url("/");
    let admitted = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (url, admitted, limited) = (url.clone(), admitted.clone(), limited.clone());
            tokio::spawn(async move {
                let client = client();
                while tokio::time::Instant::now() < end {
                    let answer = get(&client, &url, None).await;
                    match answer.status {
                        StatusCode::OK => admitted.fetch_add(1, Ordering::SeqCst),
                        StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::SeqCst),
                        other => panic!("unexpected {other}"),
                    };
                    // Paced a little, so the run is about admission, not about the machine.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let admitted = admitted.load(Ordering::SeqCst);
    assert!(
        (450..=550).contains(&admitted),
        "{admitted} admitted, {} limited",
        limited.load(Ordering::SeqCst)
    );
    assert!(limited.load(Ordering::SeqCst) > 0);
    // The bucket refills as time goes: spend it again to see a refusal's fields.
    let mut refused = get_with(&proxy, "/", &[]).await;
    for _ in 0..20 {
        if refused.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        refused = get_with(&proxy, "/", &[]).await;
    }
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(refused.headers["ratelimit-policy"], "\"r.0\";q=50;w=1");
    assert!(
        refused.headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"r.0\";r=0;t="),
        "{:?}",
        refused.headers["ratelimit"]
    );
    assert_eq!(refused.headers["x-ratelimit-limit"], "50");
    let limited = [("route", "r"), ("rule", "0"), ("result", "limited")];
    let name = "switchyard_rate_limit_requests_total";
    assert!(sample(&proxy, name, &limited).await.unwrap_or(0.0) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_limit_counts_but_never_refuses_and_keys_keep_clients_apart() {
    let up = Upstream::start("up").await;
    let limits = Value::Array(
        vec![
            rule(&[("rate", "1/m".into()), ("dry_run", true.into())]),
            rule(&[
                ("rate", "1/m".into()),
                ("burst", 1.into()),
                ("key", "header:X-Api-Key".into()),
            ]),
        ]
        .into_iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect(),
    );
    let proxy = proxy_with(&up, |c| c, |r| r.set("rate_limit", limits)).await;
    let status = |key: &'static str| {
        let proxy = &proxy;
        async move { get_with(proxy, "/", &[("x-api-key", key)]).await.status }
    };
    // Key a: 1 + a burst of 1, then refused; key b has its own.
    assert_eq!(status("a").await, StatusCode::OK);
    assert_eq!(status("a").await, StatusCode::OK);
    assert_eq!(status("a").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status("b").await, StatusCode::OK);
    let dry = [("route", "r"), ("rule", "0"), ("result", "dry_run")];
    let name = "switchyard_rate_limit_requests_total";
    assert_eq!(
        sample(&proxy, name, &dry).await,
        Some(3.0),
        "the dry run admitted 1 of 4"
    );
}
