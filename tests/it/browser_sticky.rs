//! Sticky sessions as a real browser (headless Chromium) keeps them: the cookie the first page
//! sets brings every later navigation to the same backend.

use crate::support::browser::{Browser, Page};
use crate::support::config::ConfigBuilder;
use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_keeps_its_backend_over_50_navigations() {
    let u = Upstream::start_all(["a", "b", "c"]).await;
    let secret = temp_dir().join("sticky.key");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-browser").unwrap();
    let list: Vec<_> = u.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|pool| {
        pool.set("sticky.secret_file", secret.display().to_string())
            // Plain HTTP here: a Secure cookie would not come back.
            .set("sticky.secure", false)
    });
    let proxy = TestProxy::start_config(&config).await;
    let url = |n: usize| format!("http://localhost:{}/?n={n}", proxy.addr.port());
    let browser = Browser::open(&url(0));
    let mut page = Page::attach(&browser).await;
    let mut seen = Vec::new();
    for n in 0..50 {
        if n > 0 {
            page.call("Page.navigate", json!({ "url": url(n) })).await;
        }
        let shown = page
            .wait_for(
                "the page",
                &format!(
                    "location.search == '?n={n}' && document.readyState == 'complete' ? document.body.innerText : ''"
                ),
                |text| !text.is_empty(),
            )
            .await;
        seen.push(shown.trim().to_owned());
    }
    assert!(
        seen.iter().all(|backend| *backend == seen[0]),
        "every navigation on one backend: {seen:?}"
    );
    let pinned = metric(
        &proxy,
        "switchyard_sticky_sessions_total{pool=\"pool\",result=\"pinned\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(pinned >= 49.0, "pinned {pinned}");
}
