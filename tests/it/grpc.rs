//! gRPC end to end through the proxy to a real tonic server over h2c: a unary call, a server
//! stream and a bidirectional stream, with statuses carried in trailers (and in trailers-only
//! answers), and `grpc_status` in the access log.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use std::time::Duration;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A tonic server with the health service (unary and server streaming) and reflection
/// (bidirectional streaming); returns its address and the health reporter.
async fn start_grpc_server() -> (std::net::SocketAddr, tonic_health::server::HealthReporter) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gRPC server");
    let addr = listener.local_addr().expect("addr");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("echo", ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("reflection service");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("gRPC server runs");
    });
    (addr, reporter)
}

async fn proxy_for(grpc: std::net::SocketAddr, log: &std::path::Path) -> TestProxy {
    let toml = ConfigBuilder::single_pool(&[("grpc", grpc, 1)])
        .with_pool(|pool| pool.set("protocol", "h2c"))
        .set("access_log.enabled", true)
        .set("access_log.format", "json")
        .set("access_log.path", log.display().to_string())
        .toml();
    TestProxy::start(&toml).await
}

async fn channel(proxy: &TestProxy) -> Channel {
    Channel::from_shared(proxy.url(""))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the proxy over h2c")
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_keep_their_status_and_trailers() {
    let (grpc, reporter) = start_grpc_server().await;
    let log = temp_dir().join("access.log");
    let proxy = proxy_for(grpc, &log).await;
    let mut health = HealthClient::new(channel(&proxy).await);

    let serving = health.check(check("echo")).await.expect("check succeeds");
    assert_eq!(serving.get_ref().status, WireStatus::Serving as i32);

    reporter
        .set_service_status("echo", ServingStatus::NotServing)
        .await;
    let not_serving = health.check(check("echo")).await.expect("check succeeds");
    assert_eq!(not_serving.get_ref().status, WireStatus::NotServing as i32);

    // An unknown service is a gRPC error: status NOT_FOUND (5), sent without a body.
    let missing = health
        .check(check("nope"))
        .await
        .expect_err("unknown service");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let lines = poll_until(DEADLINE, "three access log lines", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    let statuses: Vec<_> = lines.iter().map(|l| l["grpc_status"].clone()).collect();
    assert_eq!(statuses, [0, 0, 5].map(serde_json::Value::from));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_flow_through() {
    let (grpc, reporter) = start_grpc_server().await;
    let proxy = proxy_for(grpc, &temp_dir().join("access.log")).await;
    let mut health = HealthClient::new(channel(&proxy).await);
    let mut updates = health
        .watch(check("echo"))
        .await
        .expect("watch starts")
        .into_inner();
    let first = updates
        .message()
        .await
        .expect("a message")
        .expect("stream open");
    assert_eq!(first.status, WireStatus::Serving as i32);
    reporter
        .set_service_status("echo", ServingStatus::NotServing)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(10), updates.message())
        .await
        .expect("update within 10s")
        .expect("a message")
        .expect("stream open");
    assert_eq!(second.status, WireStatus::NotServing as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streams_flow_both_ways() {
    let (grpc, _reporter) = start_grpc_server().await;
    let proxy = proxy_for(grpc, &temp_dir().join("access.log")).await;
    let mut reflection = ServerReflectionClient::new(channel(&proxy).await);
    let (requests, outbound) = tokio::sync::mpsc::channel(4);
    let mut responses = reflection
        .server_reflection_info(tokio_stream_from(outbound))
        .await
        .expect("stream starts")
        .into_inner();
    // Each request is answered before the next is sent: both directions are open at once.
    for round in 0..3 {
        requests
            .send(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            })
            .await
            .expect("request sent");
        let response = responses
            .message()
            .await
            .expect("a response")
            .unwrap_or_else(|| panic!("stream open in round {round}"));
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected response {response:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    }
    drop(requests);
    assert!(
        responses.message().await.expect("clean end").is_none(),
        "status OK in trailers"
    );
}

/// A stream of the messages sent on `rx`.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_health_probe_follows_the_servers_serving_status() {
    let (grpc, reporter) = start_grpc_server().await;
    let toml = ConfigBuilder::single_pool(&[("grpc", grpc, 1)])
        .with_pool(|pool| {
            pool.set("protocol", "h2c")
                .set("health_check.type", "grpc")
                .set("health_check.service", "echo")
                .set("health_check.interval", "200ms")
                .set("health_check.timeout", "150ms")
                .set("health_check.healthy_threshold", 1)
                .set("health_check.unhealthy_threshold", 1)
        })
        .toml();
    let proxy = TestProxy::start(&toml).await;
    let state = |want: &'static str| {
        let proxy = &proxy;
        async move {
            poll_until(DEADLINE, want, || async {
                let (_, view) = proxy
                    .admin("GET", "/api/pools/pool/backends/grpc", None, None)
                    .await;
                (view["state"] == want).then_some(())
            })
            .await
        }
    };
    state("healthy").await;
    reporter
        .set_service_status("echo", ServingStatus::NotServing)
        .await;
    state("unhealthy").await;
    reporter
        .set_service_status("echo", ServingStatus::Serving)
        .await;
    state("healthy").await;
}
