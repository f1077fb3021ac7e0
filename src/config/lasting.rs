//! The header names and fixed values of the config's header rules, kept for the life of the
//! process: a `'static` name or value is copied into a request without touching a reference
//! count, where a shared one costs an atomic increment and, when the request ends, a
//! decrement. Each distinct text is kept once (a reload that repeats it reuses it), so what
//! this holds is bounded by the texts the configs ever named. Here, beside the config, rather
//! than on the data plane: its lock is taken only when a config is applied.

use http::{HeaderName, HeaderValue};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Every text kept so far. Taken only when a config is applied, never by a request.
static KEPT: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);

/// `text`, kept for the life of the process.
fn kept(text: &str) -> &'static str {
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&text) = kept.get(text) {
        return text;
    }
    let text: &'static str = Box::leak(text.into());
    kept.insert(text);
    text
}

/// `name`, kept for the life of the process.
pub fn name(name: &HeaderName) -> HeaderName {
    HeaderName::from_static(kept(name.as_str()))
}

/// `value`, kept for the life of the process when it is visible ASCII (as `from_static`
/// requires); as it is otherwise.
pub fn value(value: &HeaderValue) -> HeaderValue {
    match value.to_str() {
        Ok(text) => HeaderValue::from_static(kept(text)),
        Err(_) => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_once_and_reads_back_the_same() {
        let first = name(&HeaderName::from_static("x-kept-once"));
        let again = name(&HeaderName::from_bytes(b"x-kept-once").unwrap());
        assert_eq!(first, "x-kept-once");
        assert_eq!(
            first.as_str().as_ptr(),
            again.as_str().as_ptr(),
            "a repeated text is not kept twice"
        );
        assert_eq!(name(&http::header::ACCEPT), http::header::ACCEPT);
    }

    #[test]
    fn a_value_outside_visible_ascii_is_left_as_it_is() {
        let odd = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(value(&odd), odd);
        assert_eq!(value(&HeaderValue::from_static("plain")), "plain");
    }
}
