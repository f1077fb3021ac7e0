//! What a route (or a pool) does to what it forwards: path and host rewrites, and header
//! rules whose values may name a few per-request variables.

use super::Checker;
use crate::config::file::{HeaderRulesFile, RouteFile};
use crate::config::model::{
    HeaderRules, HostRewrite, PathMatch, Piece, Rewrite, RouteAction, Template, Variable,
};
use http::HeaderName;
use http::uri::{Authority, PathAndQuery};
use toml::Spanned;

/// Headers a rule may not touch: the connection's own and the message's framing, which the
/// proxy alone writes (a rule could otherwise split or smuggle a message), and `Host`, which
/// `host_rewrite` changes.
const FORBIDDEN: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
];

impl Checker {
    /// `strip_prefix`, `add_prefix` and `rewrite`: for routes with a pool; stripping for a
    /// prefix route only.
    pub(super) fn rewrite(
        &mut self,
        route: &RouteFile,
        i: usize,
        path: &PathMatch,
        action: &RouteAction,
    ) -> Rewrite {
        let mut rewrite = Rewrite::default();
        let forwards = matches!(action, RouteAction::Pool(_));
        if let Some(strip) = &route.strip_prefix {
            match path {
                _ if !forwards => self.not_forwarding(strip.span(), i, "strip_prefix"),
                PathMatch::Prefix(_) => rewrite.strip_prefix = *strip.get_ref(),
                PathMatch::Exact(_) | PathMatch::Regex(_) => self.report(
                    strip.span(),
                    format!(
                        "routes[{i}].strip_prefix: only a path_prefix route has a prefix to strip"
                    ),
                ),
            }
        }
        if let Some(prefix) = &route.add_prefix {
            let text = prefix.get_ref();
            if !forwards {
                self.not_forwarding(prefix.span(), i, "add_prefix");
            } else if text.starts_with('/')
                && !text.contains(['?', '#'])
                && PathAndQuery::try_from(text.as_str()).is_ok()
            {
                rewrite.add_prefix = Some(text.trim_end_matches('/').to_owned());
            } else {
                self.report(
                    prefix.span(),
                    format!("routes[{i}].add_prefix: {text:?} must be a path starting with '/', without '?' or '#'"),
                );
            }
        }
        if let Some(regex) = &route.rewrite {
            let field = format!("routes[{i}].rewrite");
            let regex = regex.get_ref();
            let replace = regex.replace.get_ref();
            if !forwards {
                self.not_forwarding(regex.regex.span(), i, "rewrite");
            } else if !replace.starts_with('/') || replace.contains(['?', '#']) {
                self.report(
                    regex.replace.span(),
                    format!(
                        "{field}.replace: {replace:?} must start with '/' and hold no '?' or '#'"
                    ),
                );
            } else {
                let source = regex.regex.get_ref();
                match regex::Regex::new(source) {
                    Ok(compiled) => {
                        rewrite.regex = Some((crate::config::Pattern(compiled), replace.clone()));
                    }
                    Err(err) => {
                        let reason = err.to_string();
                        let reason = reason.lines().last().unwrap_or("invalid").trim().to_owned();
                        self.report(
                            regex.regex.span(),
                            format!("{field}.regex: not a regular expression: {reason}"),
                        );
                    }
                }
            }
        }
        rewrite
    }

    /// `host_rewrite` (a fixed host) or `auto_host_rewrite` (the backend's address).
    pub(super) fn host_rewrite(&mut self, route: &RouteFile, i: usize) -> HostRewrite {
        match (&route.host_rewrite, &route.auto_host_rewrite) {
            (Some(_), Some(auto)) if *auto.get_ref() => {
                self.report(
                    auto.span(),
                    format!("routes[{i}]: give host_rewrite or auto_host_rewrite, not both"),
                );
                HostRewrite::Keep
            }
            (Some(host), _) => match Authority::try_from(host.get_ref().as_str()) {
                Ok(authority) if !authority.host().is_empty() && !host.get_ref().contains('@') => {
                    HostRewrite::To(host.get_ref().clone())
                }
                _ => {
                    self.report(
                        host.span(),
                        format!(
                            "routes[{i}].host_rewrite: {:?} is not host or host:port",
                            host.get_ref()
                        ),
                    );
                    HostRewrite::Keep
                }
            },
            (None, Some(auto)) if *auto.get_ref() => HostRewrite::Backend,
            _ => HostRewrite::Keep,
        }
    }

    fn not_forwarding(&mut self, span: std::ops::Range<usize>, i: usize, key: &str) {
        self.report(
            span,
            format!("routes[{i}].{key}: applies to a route that forwards to a pool"),
        );
    }

    /// `set`, `add` and `remove`.
    pub(super) fn header_rules(&mut self, rules: &HeaderRulesFile, field: &str) -> HeaderRules {
        let mut out = HeaderRules::default();
        for (list, key, into) in [
            (&rules.set, "set", &mut out.set),
            (&rules.add, "add", &mut out.add),
        ] {
            for (name, value) in list {
                let field = format!("{field}.{key}.{name}");
                let Some(name) = self.rule_name(name, value.span(), &field) else {
                    continue;
                };
                if let Some(template) = self.template(value, &field) {
                    into.push((name, template));
                }
            }
        }
        for name in &rules.remove {
            let field = format!("{field}.remove");
            if let Some(name) = self.rule_name(name.get_ref(), name.span(), &field) {
                out.remove.push(name);
            }
        }
        out
    }

    fn rule_name(
        &mut self,
        name: &str,
        span: std::ops::Range<usize>,
        field: &str,
    ) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) if FORBIDDEN.contains(&header.as_str()) => {
                self.report(
                    span,
                    format!("{field}: {name:?} belongs to the connection or the message framing and cannot be changed by a rule"),
                );
                None
            }
            Ok(header) => Some(header),
            Err(_) => {
                self.report(span, format!("{field}: {name:?} is not a header name"));
                None
            }
        }
    }

    /// Text with `{variable}`s (`{{` and `}}` for braces), each piece a valid header value.
    fn template(&mut self, value: &Spanned<String>, field: &str) -> Option<Template> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = value.get_ref().as_str();
        let names = || Variable::ALL.map(|(name, _)| name).join(", ");
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                text.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                text.push('}');
                rest = after;
            } else if c == '{' {
                let Some((name, after)) = rest[1..].split_once('}') else {
                    self.report(
                        value.span(),
                        format!("{field}: '{{' without '}}' (write {{{{ for a brace)"),
                    );
                    return None;
                };
                let Some(&(_, variable)) = Variable::ALL.iter().find(|(n, _)| *n == name) else {
                    self.report(
                        value.span(),
                        format!("{field}: unknown variable {{{name}}}; known: {}", names()),
                    );
                    return None;
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(variable));
                rest = after;
            } else {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let literal_ok = pieces.iter().all(|piece| match piece {
            Piece::Text(text) => http::HeaderValue::from_str(text).is_ok(),
            Piece::Var(_) => true,
        });
        if !literal_ok {
            self.report(
                value.span(),
                format!("{field}: not a header value (control characters, or not ASCII)"),
            );
            return None;
        }
        Some(Template(pieces))
    }
}
