//! What the operator's side sets: the admin API and its token, the access log.

use super::Checker;
use crate::config::file::{AccessLogFile, AccessLogFormatFile, AdminFile};
use crate::config::model::{AccessLogConfig, AccessLogFormat, AdminConfig, TokenSource};
use std::net::SocketAddr;
use toml::Spanned;

impl Checker {
    pub(super) fn admin(&mut self, file: AdminFile) -> Option<AdminConfig> {
        if file.enabled == Some(false) {
            return None;
        }
        let bind = match &file.bind {
            None => AdminConfig::DEFAULT_BIND
                .parse()
                .expect("default admin address is valid"),
            Some(bind) => match bind.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.report(
                        bind.span(),
                        format!("admin.bind: {:?} is not an IP:port address", bind.get_ref()),
                    );
                    return None;
                }
            },
        };
        let token = self
            .token_source(&file.token_env, &file.token_file, "admin.token")?
            .unwrap_or_else(|| TokenSource::Env(AdminConfig::DEFAULT_TOKEN_ENV.to_owned()));
        let read_token = self
            .token_source(
                &file.read_token_env,
                &file.read_token_file,
                "admin.read_token",
            )
            .flatten();
        Some(AdminConfig {
            bind,
            token,
            read_token,
        })
    }

    /// Where a secret comes from: `{field}_env` or `{field}_file` (not both), or neither
    /// (`Some(None)`); `None` after reporting both set.
    pub(super) fn token_source(
        &mut self,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        field: &str,
    ) -> Option<Option<TokenSource>> {
        match (env, file) {
            (Some(env), Some(_)) => {
                self.report(
                    env.span(),
                    format!("{field}_env: set {field}_env or {field}_file, not both"),
                );
                None
            }
            (Some(env), None) => Some(Some(TokenSource::Env(env.get_ref().clone()))),
            (None, Some(path)) => Some(Some(TokenSource::File(path.get_ref().into()))),
            (None, None) => Some(None),
        }
    }

    pub(super) fn access_log(&mut self, file: &AccessLogFile) -> Option<AccessLogConfig> {
        if file.enabled == Some(false) {
            return None;
        }
        let format = match file.format.as_ref().map(|f| *f.get_ref()) {
            None | Some(AccessLogFormatFile::Json) => AccessLogFormat::Json,
            Some(AccessLogFormatFile::Combined) => AccessLogFormat::Combined,
            Some(AccessLogFormatFile::Extended) => AccessLogFormat::Extended,
        };
        let path = match &file.path {
            None => None,
            Some(p) if p.get_ref() == "stdout" => None,
            Some(p) if p.get_ref().is_empty() => {
                self.report(
                    p.span(),
                    "access_log.path: must be \"stdout\" or a file path".into(),
                );
                None
            }
            Some(p) => Some(p.get_ref().into()),
        };
        let buffer: usize = self.int(
            &file.buffer,
            "access_log.buffer",
            1..=1_048_576,
            AccessLogConfig::DEFAULT_BUFFER,
        );
        Some(AccessLogConfig {
            format,
            path,
            buffer,
        })
    }
}
