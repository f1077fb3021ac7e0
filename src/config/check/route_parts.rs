//! The parts of a route besides host and path: its method, header and query conditions, and
//! the answers a route gives itself (`redirect`, `respond`).

use super::Checker;
use super::values::is_dns_name;
use crate::config::file::{HeaderMatchFile, QueryMatchFile, RedirectFile, RespondFile};
use crate::config::model::{HeaderMatch, PathMatch, QueryMatch, Redirect, Respond, ValueTest};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use toml::Spanned;

/// The statuses a redirect may have.
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

impl Checker {
    pub(super) fn methods(&mut self, methods: &[Spanned<String>], i: usize) -> Vec<Method> {
        methods
            .iter()
            .filter_map(|method| {
                let name = method.get_ref();
                let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase());
                match Method::from_bytes(name.as_bytes()) {
                    Ok(parsed) if valid => Some(parsed),
                    _ => {
                        self.report(
                            method.span(),
                            format!("routes[{i}].methods: {name:?} is not a method name in upper case (GET, POST, ...)"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    pub(super) fn header_matches(
        &mut self,
        headers: &[Spanned<HeaderMatchFile>],
        i: usize,
    ) -> Vec<HeaderMatch> {
        let mut out = Vec::new();
        for (j, header) in headers.iter().enumerate() {
            let field = format!("routes[{i}].headers[{j}]");
            let span = header.span();
            let header = header.get_ref();
            let Ok(name) = HeaderName::from_bytes(header.name.get_ref().as_bytes()) else {
                self.report(
                    header.name.span(),
                    format!(
                        "{field}.name: {:?} is not a header name",
                        header.name.get_ref()
                    ),
                );
                continue;
            };
            let tests = [
                header.exact.is_some(),
                header.prefix.is_some(),
                header.regex.is_some(),
                header.present.is_some(),
            ];
            if tests.iter().filter(|&&t| t).count() != 1 {
                self.report(
                    span,
                    format!("{field}: give one of exact, prefix, regex and present"),
                );
                continue;
            }
            let test = if let Some(exact) = &header.exact {
                ValueTest::Exact(exact.clone())
            } else if let Some(prefix) = &header.prefix {
                ValueTest::Prefix(prefix.clone())
            } else if let Some(regex) = &header.regex {
                match self.pattern(regex, &format!("{field}.regex")) {
                    Some(pattern) => ValueTest::Regex(pattern),
                    None => continue,
                }
            } else if header.present == Some(true) {
                ValueTest::Present
            } else {
                ValueTest::Absent
            };
            out.push(HeaderMatch { name, test });
        }
        out
    }

    pub(super) fn query_matches(
        &mut self,
        query: &[Spanned<QueryMatchFile>],
        i: usize,
    ) -> Vec<QueryMatch> {
        let mut out = Vec::new();
        for (j, parameter) in query.iter().enumerate() {
            let span = parameter.span();
            let parameter = parameter.get_ref();
            match (&parameter.exact, parameter.present) {
                (Some(exact), None) => out.push(QueryMatch {
                    name: parameter.name.get_ref().clone(),
                    exact: Some(exact.clone()),
                }),
                (None, Some(true)) => out.push(QueryMatch {
                    name: parameter.name.get_ref().clone(),
                    exact: None,
                }),
                _ => self.report(
                    span,
                    format!("routes[{i}].query[{j}]: give one of exact and present = true"),
                ),
            }
        }
        out
    }

    pub(super) fn route_redirect(
        &mut self,
        redirect: &Spanned<RedirectFile>,
        i: usize,
        path: &PathMatch,
    ) -> Option<Redirect> {
        let field = format!("routes[{i}].redirect");
        let span = redirect.span();
        let redirect = redirect.get_ref();
        let status = match &redirect.status {
            None => StatusCode::FOUND,
            Some(status) => match u16::try_from(*status.get_ref()) {
                Ok(code) if REDIRECTS.contains(&code) => StatusCode::from_u16(code).ok()?,
                _ => {
                    self.report(
                        status.span(),
                        format!(
                            "{field}.status: {} is not 301, 302, 303, 307 or 308",
                            status.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let mut ok = true;
        let mut text = |this: &mut Self,
                        value: &Option<Spanned<String>>,
                        key: &str,
                        valid: &dyn Fn(&str) -> bool,
                        what: &str| {
            let value = value.as_ref()?;
            if valid(value.get_ref()) {
                Some(value.get_ref().clone())
            } else {
                this.report(
                    value.span(),
                    format!("{field}.{key}: {:?} {what}", value.get_ref()),
                );
                ok = false;
                None
            }
        };
        let scheme = text(
            self,
            &redirect.scheme,
            "scheme",
            &|s| s == "http" || s == "https",
            "is not http or https",
        );
        let host = text(
            self,
            &redirect.host,
            "host",
            &|h| is_dns_name(&h.to_ascii_lowercase()) || h.parse::<std::net::IpAddr>().is_ok(),
            "is not a host name",
        );
        let absolute = |p: &str| {
            p.starts_with('/') && !p.contains(['?', '#']) && HeaderValue::from_str(p).is_ok()
        };
        let new_path = text(
            self,
            &redirect.path,
            "path",
            &absolute,
            "must start with '/' and hold no '?' or '#'",
        );
        let prefix = text(
            self,
            &redirect.prefix,
            "prefix",
            &absolute,
            "must start with '/' and hold no '?' or '#'",
        );
        let query = text(
            self,
            &redirect.query,
            "query",
            &|q| !q.contains('#') && HeaderValue::from_str(q).is_ok(),
            "may not hold '#'",
        );
        let port = redirect
            .port
            .as_ref()
            .and_then(|port| match u16::try_from(*port.get_ref()) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.report(
                        port.span(),
                        format!("{field}.port: {} is not a port", port.get_ref()),
                    );
                    ok = false;
                    None
                }
            });
        if prefix.is_some() && !matches!(path, PathMatch::Prefix(_)) {
            self.report(
                span.clone(),
                format!("{field}.prefix: only a path_prefix route can replace its prefix"),
            );
            return None;
        }
        if new_path.is_some() && prefix.is_some() {
            self.report(span, format!("{field}: give path or prefix, not both"));
            return None;
        }
        let target = [
            scheme.is_some(),
            host.is_some(),
            port.is_some(),
            new_path.is_some(),
            prefix.is_some(),
            query.is_some(),
        ];
        if ok && !target.contains(&true) {
            self.report(
                span,
                format!("{field}: no target: replace at least one of scheme, host, port, path, prefix and query"),
            );
            return None;
        }
        ok.then_some(Redirect {
            status,
            scheme,
            host,
            port,
            path: new_path,
            prefix,
            query,
        })
    }

    pub(super) fn respond(&mut self, respond: &Spanned<RespondFile>, i: usize) -> Respond {
        let field = format!("routes[{i}].respond");
        let span = respond.span();
        let respond = respond.get_ref();
        if let Some(content_type) = &respond.content_type {
            if HeaderValue::from_str(content_type).is_err() {
                self.report(
                    span,
                    format!("{field}.content_type: {content_type:?} is not a header value"),
                );
            }
        }
        let status = self.int(
            &respond.status,
            &format!("{field}.status"),
            200..=599,
            200u16,
        );
        let content_type = respond
            .content_type
            .clone()
            .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned());
        Respond {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body: respond.body.clone().unwrap_or_default(),
            content_type,
        }
    }
}
