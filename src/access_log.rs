//! The access log: one line per request, JSON or combined text, written by its own task. The
//! request path only hands a record to a bounded channel; when the channel is full the line is
//! dropped and counted, so a slow disk never stalls requests.

use crate::config::{AccessLogConfig, AccessLogFormat};
use http::{HeaderValue, Method, StatusCode, Uri};
use metrics::Counter;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Everything logged about one request.
#[derive(Debug)]
pub struct Record {
    /// When the request arrived.
    pub time: SystemTime,
    /// Client address.
    pub client: IpAddr,
    /// Request method.
    pub method: Method,
    /// Request target (only the path is logged).
    pub uri: Uri,
    /// Response status.
    pub status: StatusCode,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Arrival to the end of the response body.
    pub total: Duration,
    /// Sending to the backend until its response headers, for the last attempt.
    pub upstream: Option<Duration>,
    /// Matched route.
    pub route: Option<Arc<str>>,
    /// Pool of the route.
    pub pool: Option<Arc<str>>,
    /// Backend that answered (or failed last).
    pub backend: Option<Arc<str>>,
    /// Retries made.
    pub retries: u32,
    /// `X-Request-Id`, as received or generated.
    pub request_id: HeaderValue,
}

/// The request path's handle on the access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    lines: Option<mpsc::Sender<Record>>,
    dropped: Counter,
}

impl AccessLog {
    /// An access log that writes nothing.
    pub fn disabled() -> Self {
        Self {
            lines: None,
            dropped: Counter::noop(),
        }
    }

    /// Queues a record; never waits.
    pub fn log(&self, record: Record) {
        if let Some(lines) = &self.lines {
            if lines.try_send(record).is_err() {
                self.dropped.increment(1);
            }
        }
    }

    /// Opens the log for `config` and starts its writer on a thread of its own (a write to a
    /// file or pipe may block, and must hold up neither requests nor the runtime's shutdown).
    /// The writer ends, after writing what is queued, once every handle is dropped; the
    /// returned receiver then resolves.
    pub fn start(
        config: &AccessLogConfig,
        dropped: Counter,
    ) -> std::io::Result<(Self, oneshot::Receiver<()>)> {
        let out: Box<dyn Write + Send> = match &config.path {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = mpsc::channel(config.buffer);
        let format = config.format;
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || {
                write_lines(rx, std::io::BufWriter::new(out), format);
                done_tx.send(()).ok(); // nobody waiting is fine
            })?;
        Ok((
            Self {
                lines: Some(tx),
                dropped,
            },
            done,
        ))
    }
}

fn write_lines(
    mut records: mpsc::Receiver<Record>,
    mut out: std::io::BufWriter<Box<dyn Write + Send>>,
    format: AccessLogFormat,
) {
    let mut line = Vec::with_capacity(512);
    loop {
        // Drain what is queued, then sleep: the writer never registers a waker, so queueing a
        // record never costs the request path a thread wake-up (a futex call per request).
        let closed = loop {
            match records.try_recv() {
                Ok(record) => {
                    line.clear();
                    format_record(&record, format, &mut line);
                    if let Err(err) = out.write_all(&line) {
                        tracing::error!(%err, "cannot write the access log");
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        if let Err(err) = out.flush() {
            tracing::error!(%err, "cannot flush the access log");
        }
        if closed {
            return;
        }
        std::thread::sleep(FLUSH_INTERVAL);
    }
}

/// How often the writer wakes to write what was queued: lines reach the log within this.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The JSON form of a record.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: IpAddr,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    route: Option<&'a str>,
    pool: Option<&'a str>,
    backend: Option<&'a str>,
    retries: u32,
    request_id: Option<&'a str>,
}

/// Appends one line for `record` to `out`.
pub fn format_record(record: &Record, format: AccessLogFormat, out: &mut Vec<u8>) {
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let request_id = record.request_id.to_str().ok();
    match format {
        AccessLogFormat::Json => {
            let line = JsonLine {
                time: humantime::format_rfc3339_millis(record.time).to_string(),
                client: record.client,
                method: record.method.as_str(),
                path: record.uri.path(),
                status: record.status.as_u16(),
                bytes_in: record.bytes_in,
                bytes_out: record.bytes_out,
                duration_ms: ms(record.total),
                upstream_ms: record.upstream.map(ms),
                route: record.route.as_deref(),
                pool: record.pool.as_deref(),
                backend: record.backend.as_deref(),
                retries: record.retries,
                request_id,
            };
            if serde_json::to_writer(&mut *out, &line).is_err() {
                out.extend_from_slice(b"{}");
            }
        }
        AccessLogFormat::Combined => {
            // NGINX's "combined" fields, then the proxy's own as key=value pairs.
            let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
            let line = format!(
                "{} - - [{}] \"{} {}\" {} {} bytes_in={} duration_ms={} upstream_ms={} route={} pool={} backend={} retries={} request_id={}",
                record.client,
                humantime::format_rfc3339_millis(record.time),
                record.method,
                record.uri.path(),
                record.status.as_u16(),
                record.bytes_out,
                record.bytes_in,
                ms(record.total),
                record
                    .upstream
                    .map_or_else(|| "-".to_owned(), |d| ms(d).to_string()),
                dash(record.route.as_deref()),
                dash(record.pool.as_deref()),
                dash(record.backend.as_deref()),
                record.retries,
                dash(request_id),
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.push(b'\n');
}
