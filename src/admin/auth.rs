//! The admin bearer token: read from an environment variable or a file, never logged, compared
//! in constant time.

use crate::config::TokenSource;
use http::HeaderMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// A bearer token. `Debug` does not show it.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Whether the request carries `Authorization: Bearer <this token>` (the scheme in any
    /// case, RFC 9110 §11.1).
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return false;
        }
        value[scheme.len()..].ct_eq(&self.0).into()
    }
}

/// Why the token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file exists but cannot be read.
    #[error("admin token file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("admin token file {0} is empty")]
    Empty(String),
}

/// Reads the token; `Ok(None)` when the environment variable is unset or empty.
pub fn load_token(source: &TokenSource) -> Result<Option<Token>, TokenError> {
    match source {
        TokenSource::Env(name) => Ok(std::env::var(name)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(|t| Token(t.into_bytes()))),
        TokenSource::File(path) => {
            let display = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
                path: display.clone(),
                source,
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenError::Empty(display));
            }
            Ok(Some(Token(token.as_bytes().to_vec())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let token = Token(b"s3cret".to_vec());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(token.authorizes(&with("Bearer s3cret")));
        assert!(token.authorizes(&with("bearer s3cret")));
        assert!(token.authorizes(&with("BEARER s3cret")));
        assert!(!token.authorizes(&with("Bearer s3cre")));
        assert!(!token.authorizes(&with("Bearer s3cret2")));
        assert!(!token.authorizes(&with("Basic s3cret")));
        assert!(!token.authorizes(&HeaderMap::new()));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }
}
