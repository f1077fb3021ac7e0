//! Listeners and what they serve under: addresses, redirects, timeouts, request limits.

use super::Checker;
use super::values::binds_overlap;
use crate::config::file::TimeoutsFile;
use crate::config::model::{Http3, ListenerConfig, Timeouts};
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

impl Checker {
    pub(super) fn listeners(
        &mut self,
        listeners: &[Spanned<crate::config::file::ListenerFile>],
    ) -> Vec<ListenerConfig> {
        if listeners.is_empty() {
            self.report(
                0..0,
                "listeners: at least one [[listeners]] table is required".into(),
            );
        }
        self.unique_names(
            listeners.iter().map(|l| &l.get_ref().name),
            "listeners",
            "listener",
        );
        let mut binds: Vec<SocketAddr> = Vec::new();
        let mut out = Vec::new();
        for (i, listener) in listeners.iter().enumerate() {
            let listener = listener.get_ref();
            self.name(&listener.name, &format!("listeners[{i}].name"));
            match listener.bind.get_ref().parse::<SocketAddr>() {
                Ok(bind) => {
                    if let Some(other) = binds.iter().find(|other| binds_overlap(**other, bind)) {
                        self.report(
                            listener.bind.span(),
                            format!(
                                "listeners[{i}].bind: {bind} overlaps {other}, bound by another listener"
                            ),
                        );
                    }
                    binds.push(bind);
                    let field = format!("listeners[{i}]");
                    let tls = listener
                        .tls
                        .as_ref()
                        .and_then(|tls| self.listener_tls(tls, &format!("{field}.tls")))
                        .map(std::sync::Arc::new);
                    let redirect_to_https = self.redirect(listener, &field);
                    let backlog = listener.backlog.is_some().then(|| {
                        self.int(&listener.backlog, &format!("{field}.backlog"), 1..=65_535, 1024)
                    });
                    let trusted_proxies = listener
                        .trusted_proxies
                        .iter()
                        .filter_map(|net| self.network(net, &format!("{field}.trusted_proxies")))
                        .collect();
                    let proxy_protocol = self.proxy_protocol(listener, &field);
                    let http3 = self.http3(listener, &field);
                    out.push(ListenerConfig {
                        name: listener.name.get_ref().clone(),
                        bind,
                        tls,
                        redirect_to_https,
                        backlog,
                        trusted_proxies,
                        proxy_protocol,
                        http3,
                    });
                }
                Err(_) => self.report(
                    listener.bind.span(),
                    format!(
                        "listeners[{i}].bind: {:?} is not an IP:port address (e.g. \"0.0.0.0:8080\" or \"[::]:8080\")",
                        listener.bind.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// The HTTPS port a plain listener redirects to, if it does.
    pub(super) fn redirect(
        &mut self,
        listener: &crate::config::file::ListenerFile,
        field: &str,
    ) -> Option<u16> {
        let https_port = listener.https_port.as_ref().map(|p| {
            u16::try_from(*p.get_ref())
                .ok()
                .filter(|&port| port != 0)
                .unwrap_or_else(|| {
                    self.report(
                        p.span(),
                        format!("{field}.https_port: must be a port from 1 to 65535"),
                    );
                    443
                })
        });
        match &listener.redirect_to_https {
            Some(on) if *on.get_ref() => {
                if listener.tls.is_some() {
                    self.report(
                        on.span(),
                        format!(
                            "{field}.redirect_to_https: a TLS listener cannot redirect to HTTPS"
                        ),
                    );
                }
                Some(https_port.unwrap_or(ListenerConfig::DEFAULT_HTTPS_PORT))
            }
            _ => None,
        }
    }

    /// A listener's HTTP/3, if on: only beside TLS (QUIC is always encrypted), and its
    /// options only with it, so a listener never silently lacks what its config names.
    fn http3(
        &mut self,
        listener: &crate::config::file::ListenerFile,
        field: &str,
    ) -> Option<Http3> {
        let on = listener.http3.as_ref().filter(|on| *on.get_ref());
        let mut port = |value: &Option<Spanned<i64>>, name: &str| {
            value.as_ref().map(|p| {
                let port = u16::try_from(*p.get_ref()).ok().filter(|&port| port != 0);
                if port.is_none() {
                    self.report(
                        p.span(),
                        format!("{field}.{name}: must be a port from 1 to 65535"),
                    );
                }
                if on.is_none() {
                    self.report(p.span(), format!("{field}.{name}: needs http3 = true"));
                }
                port
            })
        };
        let http3_port = port(&listener.http3_port, "http3_port").flatten();
        let advertised_port = port(&listener.advertised_port, "advertised_port").flatten();
        let early_data = listener.early_data.as_ref();
        if let (Some(early), None) = (early_data, on) {
            self.report(
                early.span(),
                format!("{field}.early_data: needs http3 = true (0-RTT is HTTP/3's here)"),
            );
        }
        let retry = listener.quic_retry.as_ref();
        if let (Some(retry), None) = (retry, on) {
            self.report(
                retry.span(),
                format!("{field}.quic_retry: needs http3 = true"),
            );
        }
        let on = on?;
        if listener.tls.is_none() {
            self.report(
                on.span(),
                format!(
                    "{field}.http3: needs [listeners.tls]: HTTP/3 runs over QUIC, which is always TLS"
                ),
            );
            return None;
        }
        Some(Http3 {
            port: http3_port,
            advertised_port,
            early_data: early_data.is_some_and(|e| *e.get_ref()),
            retry: retry.is_some_and(|r| *r.get_ref()),
        })
    }

    pub(super) fn timeouts(&mut self, file: &TimeoutsFile) -> Timeouts {
        let defaults = Timeouts::default();
        Timeouts {
            connect: self.duration(&file.connect, "timeouts.connect", defaults.connect),
            response_header: self.duration(
                &file.response_header,
                "timeouts.response_header",
                defaults.response_header,
            ),
            request_header: self.duration(
                &file.request_header,
                "timeouts.request_header",
                defaults.request_header,
            ),
            request_body: self.duration(
                &file.request_body,
                "timeouts.request_body",
                defaults.request_body,
            ),
            http2_ping_interval: self.duration(
                &file.http2_ping_interval,
                "timeouts.http2_ping_interval",
                defaults.http2_ping_interval,
            ),
            http2_ping_timeout: self.duration(
                &file.http2_ping_timeout,
                "timeouts.http2_ping_timeout",
                defaults.http2_ping_timeout,
            ),
            idle: self.duration(&file.idle, "timeouts.idle", defaults.idle),
            upstream_idle: self.duration(
                &file.upstream_idle,
                "timeouts.upstream_idle",
                defaults.upstream_idle,
            ),
            shutdown: self.duration(&file.shutdown, "timeouts.shutdown", defaults.shutdown),
            request: file
                .request
                .as_ref()
                .map(|_| self.duration(&file.request, "timeouts.request", Duration::MAX)),
            tunnel_idle: self.duration(
                &file.tunnel_idle,
                "timeouts.tunnel_idle",
                defaults.tunnel_idle,
            ),
            shutdown_delay: self.duration_or_zero(
                &file.shutdown_delay,
                "timeouts.shutdown_delay",
                defaults.shutdown_delay,
            ),
        }
    }

    pub(super) fn limits(
        &mut self,
        file: &crate::config::file::LimitsFile,
    ) -> crate::config::model::Limits {
        let defaults = crate::config::model::Limits::default();
        crate::config::model::Limits {
            max_header_bytes: self.int(
                &file.max_header_bytes,
                "limits.max_header_bytes",
                8192..=1024 * 1024,
                defaults.max_header_bytes,
            ),
            max_headers: self.int(
                &file.max_headers,
                "limits.max_headers",
                1..=1000,
                defaults.max_headers,
            ),
            max_uri_bytes: self.int(
                &file.max_uri_bytes,
                "limits.max_uri_bytes",
                64..=1024 * 1024,
                defaults.max_uri_bytes,
            ),
            underscore_headers: match file.underscore_headers.as_ref().map(|u| *u.get_ref()) {
                None | Some(crate::config::file::UnderscoreHeadersFile::Drop) => {
                    crate::config::model::UnderscoreHeaders::Drop
                }
                Some(crate::config::file::UnderscoreHeadersFile::Reject) => {
                    crate::config::model::UnderscoreHeaders::Reject
                }
            },
        }
    }
}
