//! The admin status page in a real headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol: it lists the pools' backends and shows a drain made through the API
//! within a second, from the event stream. A screenshot is left in `target/status-page.png`.

use crate::support::browser::{Browser, Page};
use crate::support::config::ConfigBuilder;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_lists_the_backends_and_shows_a_drain_within_a_second() {
    let upstreams = Upstream::start_all(["alpha", "beta", "gamma"]).await;
    let backends: Vec<_> = upstreams.iter().map(|u| (u.name, u.addr, 1)).collect();
    let proxy = TestProxy::start(&ConfigBuilder::single_pool(&backends).toml()).await;
    let admin = proxy.gateway.admin_addr().unwrap();
    let browser = Browser::open(&format!("http://{admin}/"));
    let mut page = Page::attach(&browser).await;

    let state = |name: &str| {
        format!(
            "document.querySelector('[data-backend=\"pool/{name}\"] .state')?.textContent ?? ''"
        )
    };
    let live = "document.getElementById('status').textContent === 'live' \
                && document.querySelectorAll('[data-backend]').length === 3";
    page.wait_for("the page live with three backends", live, |v| v == "true")
        .await;
    for name in ["alpha", "beta", "gamma"] {
        assert_eq!(page.eval(&state(name)).await, "healthy", "{name}");
    }

    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/alpha/drain", None, None)
        .await;
    assert_eq!(status, 200);
    let drained = tokio::time::Instant::now();
    page.wait_for("the drain shown", &state("alpha"), |v| v == "drained")
        .await;
    let shown_after = drained.elapsed();
    println!("the drain showed on the page {shown_after:?} after the API answered");
    assert!(
        shown_after < Duration::from_secs(1),
        "shown after {shown_after:?}"
    );
    let events = page
        .eval("document.getElementById('events').innerText")
        .await;
    assert!(events.contains("pool/alpha healthy → drained"), "{events}");

    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/status-page.png");
    std::fs::write(path, png).unwrap();
}

/// Standard base64, as DevTools sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET.iter().position(|&a| a == byte).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_page_asks_for_it_and_then_shows_the_backends() {
    let up = Upstream::start("alpha").await;
    let token = temp_dir().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let config = ConfigBuilder::single_pool(&[(up.name, up.addr, 1)])
        .set("admin.token_file", token.display().to_string());
    let proxy = TestProxy::start(&config.toml()).await;
    let admin = proxy.gateway.admin_addr().unwrap();
    let browser = Browser::open(&format!("http://{admin}/"));
    let mut page = Page::attach(&browser).await;
    let asks = "getComputedStyle(document.getElementById('token')).display";
    page.wait_for("the page asking for a token", asks, |v| v == "block")
        .await;
    assert_eq!(
        page.eval("String(document.querySelectorAll('[data-backend]').length)")
            .await,
        "0"
    );
    page.eval("document.getElementById('token-input').value = 't0ken'; document.querySelector('#token button').click()")
        .await;
    let rows = "String(document.querySelectorAll('[data-backend]').length)";
    page.wait_for("the backend shown with the token", rows, |v| v == "1")
        .await;
}

/// The page shows what happened before it was opened (the server's recent events), a summary
/// line, and acts: its drain button drains, its undrain button undoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_past_events_a_summary_and_drains_on_a_click() {
    let upstreams = Upstream::start_all(["alpha", "beta"]).await;
    let backends: Vec<_> = upstreams.iter().map(|u| (u.name, u.addr, 1)).collect();
    let proxy = TestProxy::start(&ConfigBuilder::single_pool(&backends).toml()).await;
    // Before the page opens: a weight change it must show from the history.
    let (status, _) = proxy
        .admin(
            "PUT",
            "/api/pools/pool/backends/beta/weight",
            Some(r#"{"weight": 3}"#),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let admin = proxy.gateway.admin_addr().unwrap();
    let browser = Browser::open(&format!("http://{admin}/"));
    let mut page = Page::attach(&browser).await;
    let events = "document.getElementById('events').innerText";
    page.wait_for("the past event shown", events, |v| {
        v.contains("pool/beta weight 3")
    })
    .await;
    let summary = page
        .eval("document.getElementById('summary').textContent")
        .await;
    assert_eq!(summary, "1 pool, 2 backends: 2 healthy");

    let click = |action: &str| {
        format!(
            "document.querySelector('[data-backend=\"pool/alpha\"] button').textContent === '{action}' && (document.querySelector('[data-backend=\"pool/alpha\"] button').click(), true)"
        )
    };
    assert_eq!(page.eval(&click("drain")).await, "true");
    let view = wait_for_state(
        &proxy,
        "pool",
        "alpha",
        switchyard::upstream::State::Drained,
    )
    .await;
    assert_eq!(view.state, switchyard::upstream::State::Drained);
    page.wait_for("the undrain button clicked", &click("undrain"), |v| {
        v == "true"
    })
    .await;
    wait_for_state(
        &proxy,
        "pool",
        "alpha",
        switchyard::upstream::State::Healthy,
    )
    .await;
}
