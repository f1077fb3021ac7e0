//! A route's `cors` table: which origins' pages may call it, and how.

use super::Checker;
use http::HeaderName;
use http::uri::Authority;
use toml::Spanned;

impl Checker {
    /// A route's `cors`: origins as `scheme://host[:port]` or `*`; `*` and credentials never
    /// together (browsers refuse the pair).
    pub(super) fn cors(
        &mut self,
        cors: &Spanned<crate::config::file::CorsFile>,
        i: usize,
    ) -> Option<crate::config::Cors> {
        let field = format!("routes[{i}].cors");
        let span = cors.span();
        let cors = cors.get_ref();
        let mut ok = true;
        let any = cors.allow_origins.iter().any(|o| o.get_ref() == "*");
        let origins: Vec<String> = cors
            .allow_origins
            .iter()
            .filter(|o| o.get_ref() != "*")
            .filter_map(|origin| {
                let text = origin.get_ref();
                let valid = text
                    .split_once("://")
                    .is_some_and(|(scheme, rest)| {
                        matches!(scheme, "http" | "https")
                            && !rest.is_empty()
                            && !rest.contains(['/', '?', '#', '@'])
                            && Authority::try_from(rest).is_ok()
                    });
                if !valid {
                    self.report(origin.span(), format!("{field}.allow_origins: {text:?} is not an origin (scheme://host[:port]) or \"*\""));
                    ok = false;
                }
                valid.then(|| text.to_ascii_lowercase())
            })
            .collect();
        if cors.allow_origins.is_empty() {
            self.report(
                span.clone(),
                format!("{field}.allow_origins: name at least one origin, or \"*\""),
            );
            ok = false;
        }
        let credentials = cors.allow_credentials.unwrap_or(false);
        if any && credentials {
            self.report(span.clone(), format!("{field}: allow_credentials = true with \"*\" is refused by browsers: list the origins"));
            ok = false;
        }
        let methods = match &cors.allow_methods {
            None => vec![http::Method::GET, http::Method::HEAD, http::Method::POST],
            Some(methods) => self.methods(methods, i),
        };
        let mut names = |list: &[Spanned<String>], key: &str| -> Vec<HeaderName> {
            list.iter()
                .filter_map(
                    |name| match HeaderName::from_bytes(name.get_ref().as_bytes()) {
                        Ok(header) => Some(header),
                        Err(_) => {
                            self.report(
                                name.span(),
                                format!("{field}.{key}: {:?} is not a header name", name.get_ref()),
                            );
                            None
                        }
                    },
                )
                .collect()
        };
        let headers = names(&cors.allow_headers, "allow_headers");
        let expose = names(&cors.expose_headers, "expose_headers");
        let max_age = cors.max_age.as_ref().map(|_| {
            self.duration(
                &cors.max_age,
                &format!("{field}.max_age"),
                std::time::Duration::ZERO,
            )
        });
        ok.then_some(crate::config::Cors {
            origins: (!any).then_some(origins),
            methods,
            headers,
            expose,
            credentials,
            max_age,
        })
    }
}
