//! Phase 6, the attempt loop: an attempt sends the request to one backend; when it fails, the
//! failure says what was sent and whose fault it is, and one decision sends the request to a
//! different backend or gives up. Only the backend's own faults feed its passive counters.

use super::Proxy;
use super::body::RequestBody;
use super::exchange::Exchange;
use super::forward;
use super::request_policy::Applied;
use super::routing::RequestSettings;
use super::upgrade::ClientUpgrade;
use super::upgrade::TunnelLimits;
use crate::body::ClientFault;
use crate::body::ClientRequest;
use crate::config::{Algorithm, RetryOn};
use crate::error::{Failure, ProxyError, UpstreamError, UpstreamFault, is_idempotent};
use crate::route::HeaderEdits;
use crate::snapshot::Pool;
use crate::upstream::pool::Lease;
use crate::upstream::{BackendState, InFlightGuard, Mark, nanos_now};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A response on its way to the client, with what it holds of the backend.
pub struct Forwarded {
    /// The backend's response.
    pub response: Response<Incoming>,
    /// Counts the request against the backend until the body ends.
    pub in_flight: InFlightGuard,
    /// The connection, returned to the pool when the response ends cleanly.
    pub lease: Lease,
    /// For a `101`: the client's side of the upgrade and the tunnel's limits.
    pub upgrade: Option<(ClientUpgrade, TunnelLimits)>,
}

/// How one attempt ended.
enum Outcome {
    /// A response to pass on as it is.
    Answered(Forwarded),
    /// A 5xx response, kept in case no other backend can take the retry.
    ServerError(Forwarded),
    /// No usable response.
    Failed(ProxyError),
}

impl Outcome {
    /// Whether another backend may take the request (the one retry decision).
    fn may_retry(&self, method: &Method, retry_on: &RetryOn) -> bool {
        match self {
            Self::ServerError(_) => retry_on.server_error && is_idempotent(method),
            Self::Failed(ProxyError::Upstream(err)) => err.fault.may_retry(method, retry_on),
            Self::Answered(_) | Self::Failed(_) => false,
        }
    }

    /// Whether the backend may have received the request: a retry of one it never did costs
    /// the backends nothing, and spends no retry budget.
    fn sent(&self) -> bool {
        match self {
            Self::Failed(ProxyError::Upstream(err)) => err.fault.sent(),
            Self::Answered(_) | Self::ServerError(_) | Self::Failed(_) => true,
        }
    }

    /// What the client gets when no retry follows.
    fn give_up(self) -> Result<Forwarded, ProxyError> {
        match self {
            Self::Answered(forwarded) | Self::ServerError(forwarded) => Ok(forwarded),
            Self::Failed(err) => Err(err),
        }
    }
}

/// A request ready for its first attempt: everything the phases before decided.
pub struct Prepared {
    /// The route's pool.
    pub pool: Arc<Pool>,
    /// What the request needs of the snapshot.
    pub settings: RequestSettings,
    /// What the request policies left for the attempts.
    pub applied: Applied,
    /// The backend of the first attempt.
    pub backend: Arc<BackendState>,
}

/// Sends `req` to the prepared backend, then to other backends of the pool while the
/// failures allow, each attempt's headers edited by the route's `header_rules`. Each attempt
/// awaits only the send: what comes before and after it is plain code, so the request's future
/// has no layer per attempt. A plain function taking the request apart before its future: an
/// `async fn` would keep its arguments whole in the future beside the parts taken out of them.
pub fn forward<'a>(
    proxy: &'a Proxy,
    prepared: Prepared,
    req: ClientRequest,
    header_rules: Option<&'a HeaderEdits>,
    exchange: &'a mut Exchange,
) -> impl Future<Output = Result<Forwarded, ProxyError>> + 'a {
    let Prepared {
        pool,
        settings,
        applied: Applied {
            hostless,
            mut upgrade,
        },
        mut backend,
    } = prepared;
    pool.policy.retry_budget.record_request();
    let (mut parts, body) = req.into_parts();
    async move {
        let policy = &pool.policy;
        let mut body =
            RequestBody::read(body, settings.request_body, settings.max_body_bytes).await?;
        let deadline = settings.request.map(|limit| Instant::now() + limit);
        let mut tried: Vec<Arc<BackendState>> = Vec::new();
        loop {
            // A streamed body can be sent once only.
            let another_possible = tried.len() < policy.retries as usize && body.is_replayable();
            let in_flight = match &policy.admission {
                None => backend.begin_request(),
                Some(admission) => backend.begin_admitted(admission),
            };
            let attempt_body = body
                .next_attempt()
                .expect("a streamed body is never retried, so it is always still there");
            let mut request = forward::upstream_request(
                &mut parts,
                attempt_body,
                (&backend.authority, hostless),
                &policy.upstream,
                // No attempt can follow: the headers are moved to the request, not copied.
                !another_possible,
            )?;
            // The route's header rules edit each attempt's own headers: the copy kept for a retry
            // stays as small as the client's, and `{backend}` is this attempt's.
            if let Some(edits) = header_rules {
                edits.apply(request.headers_mut(), &exchange.vars());
            }
            let wait = forward::ResponseWait {
                silence: settings.response_header,
                deadline,
                body: body.progress(),
            };
            let sent = Instant::now();
            let result = forward::send(request, &backend, &policy.upstream, &settings.dial, wait)
                .await
                .and_then(|(response, lease)| {
                    forward::checked_response(response, &backend, upgrade.is_some())
                        .map(|response| (response, lease))
                });
            let took = sent.elapsed();
            exchange.record.upstream = Some(took);
            exchange.record.bytes_in = body.bytes();
            let attempt = Attempt {
                took,
                proxy,
                pool: &pool,
                backend: &backend,
                in_flight,
            };
            let outcome = attempt.outcome(result, &body, &mut upgrade, settings.tunnel);
            if let Outcome::Answered(forwarded) = outcome {
                return Ok(forwarded);
            }
            let retry = another_possible
                && deadline.is_none_or(|deadline| Instant::now() < deadline)
                && outcome.may_retry(&parts.method, &policy.retry_on);
            let next = if retry {
                tried.push(Arc::clone(&backend));
                pool.pick_other(&tried)
            } else {
                None
            };
            // The budget guards against retry storms on backends that do receive the requests.
            let next = next.filter(|_| {
                let spent = !outcome.sent() || policy.retry_budget.try_spend();
                if !spent {
                    backend.metrics.budget_exhausted.increment(1);
                    tracing::debug!(pool = %pool.name, "retry budget exhausted; not retrying");
                }
                spent
            });
            let Some((index, next)) = next else {
                return outcome.give_up();
            };
            backend.metrics.retries.increment(1);
            tracing::debug!(pool = %pool.name, from = %backend.name, to = %next.name, "retrying on another backend");
            exchange.chose(index, &next.name);
            exchange.record.retries += 1;
            if let Some(sticky) = &pool.policy.sticky {
                // The session moves with the request to the backend that takes it.
                let now = exchange.unix_seconds();
                exchange.set_cookie = sticky.cookie(&next.name, now, now);
            }
            backend = Arc::clone(next);
        }
    }
}

/// One attempt on one backend, once its send has ended.
struct Attempt<'a> {
    proxy: &'a Proxy,
    pool: &'a Pool,
    backend: &'a Arc<BackendState>,
    /// Counts the attempt against the backend.
    in_flight: InFlightGuard,
    /// From sending to the response's head, or to the failure.
    took: Duration,
}

impl Attempt<'_> {
    /// What the attempt's `result` comes to: a response to pass on, or a failure that says
    /// whose fault it is, counted against the backend when it is the backend's.
    fn outcome(
        self,
        result: Result<(Response<Incoming>, Lease), UpstreamError>,
        body: &RequestBody,
        upgrade: &mut Option<ClientUpgrade>,
        tunnel: TunnelLimits,
    ) -> Outcome {
        let (backend, policy) = (self.backend, &self.pool.policy);
        match result {
            Ok((response, lease)) => {
                let status = response.status();
                if policy.algorithm == Algorithm::LeastLatency {
                    learn(backend, &response, self.took, policy.latency_decay);
                }
                if policy.admission.as_ref().is_some_and(|a| a.adaptive) {
                    backend.adapt(nanos(self.took));
                }
                self.proxy
                    .report(backend.record_response(status, policy.outlier.consecutive_5xx));
                let upgrade = (status == StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| upgrade.take())
                    .flatten()
                    .map(|client| (client, tunnel));
                let forwarded = Forwarded {
                    response,
                    in_flight: self.in_flight,
                    lease,
                    upgrade,
                };
                if status.is_server_error() {
                    Outcome::ServerError(forwarded)
                } else {
                    Outcome::Answered(forwarded)
                }
            }
            Err(err) => {
                drop(self.in_flight);
                let err = blame(err, body.fault(), backend.has(Mark::DrainCut));
                if let ProxyError::Upstream(cause) = &err {
                    if let Some(failure) = cause.fault.failure() {
                        if failure == Failure::Connect {
                            forward::log_connect_failure(cause, backend);
                        }
                        if failure == Failure::Timeout
                            && policy.algorithm == Algorithm::LeastLatency
                        {
                            // A timeout is a latency too: at least this long.
                            backend.latency.observe(
                                nanos(self.took),
                                nanos_now(),
                                nanos(policy.latency_decay),
                            );
                        }
                        let threshold = policy.outlier.consecutive_failures;
                        self.proxy
                            .report(backend.record_failure(failure, threshold));
                    }
                }
                Outcome::Failed(err)
            }
        }
    }
}

/// What a least-latency pool learns from a response: how long its head took, and a
/// `Retry-After` (in seconds) on a 429 or 503, which keeps new requests away that long.
fn learn(backend: &BackendState, response: &Response<Incoming>, took: Duration, decay: Duration) {
    let now = nanos_now();
    backend.latency.observe(nanos(took), now, nanos(decay));
    if matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        let seconds = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        if let Some(seconds) = seconds {
            backend
                .latency
                .penalise(now, seconds.saturating_mul(1_000_000_000));
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whose fault a failed attempt is: the client's when it broke its own body (nothing the
/// backend did: counted against nobody, never retried); the operator's when the backend's
/// drain deadline closed its connections (the request may have run, so it is not run again
/// elsewhere, nor is it the backend's failure); otherwise the backend's, as `err` says.
fn blame(err: UpstreamError, client: Option<ClientFault>, drain_cut: bool) -> ProxyError {
    if let Some(fault) = client {
        ProxyError::ClientBody(fault)
    } else if drain_cut {
        UpstreamError::new(err.backend, UpstreamFault::DrainCut).into()
    } else {
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset() -> UpstreamError {
        UpstreamError::new("b".into(), UpstreamFault::Reset)
    }

    #[test]
    fn a_client_that_broke_its_body_is_to_blame_whatever_the_backend_did() {
        for drain_cut in [false, true] {
            let err = blame(reset(), Some(ClientFault::Timeout), drain_cut);
            assert!(matches!(err, ProxyError::ClientBody(ClientFault::Timeout)));
            assert_eq!(err.upstream_fault(), None);
        }
    }

    #[test]
    fn a_drain_deadline_takes_the_blame_from_the_backend() {
        let err = blame(reset(), None, true);
        assert_eq!(err.upstream_fault(), Some(UpstreamFault::DrainCut));
    }

    #[test]
    fn otherwise_the_backend_is_to_blame_as_its_error_says() {
        assert_eq!(
            blame(reset(), None, false).upstream_fault(),
            Some(UpstreamFault::Reset)
        );
    }
}
