//! Dot segments removed from the request path before it is matched or forwarded (RFC 3986
//! §5.2.4), so that `/public/../admin` is routed, and reaches the backend, as `/admin`: a
//! route cannot be stepped around, and backend and proxy read one path. `%2E` counts as a dot
//! (it is one, RFC 3986 §2.3); `%2F` is left alone, never read as a separator. A path without
//! a dot segment, nearly every one, is only scanned.

use http::Uri;
use http::uri::PathAndQuery;

/// `uri` with the dot segments of its path removed, or `None` when it has none.
pub fn without_dot_segments(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    if !has_dot_segment(path) {
        return None;
    }
    let mut normal = remove_dot_segments(path);
    if let Some(query) = uri.query() {
        normal.push('?');
        normal.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(normal).ok();
    Uri::from_parts(parts).ok()
}

/// Whether a segment of `path` is `.` or `..` (spelled with `%2E` or not).
pub(crate) fn has_dot_segment(path: &str) -> bool {
    // Cheap first: no `.` and no `%` means no dot segment.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
    path.split('/').any(is_dot_segment)
}

fn is_dot_segment(segment: &str) -> bool {
    matches!(dots(segment), Some(1 | 2))
}

/// How many dots `segment` is, if it is only dots (`.`, `%2e`, `%2E`).
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment;
    let mut count = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
    }
    Some(count)
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments go, `..` removes the segment before it
/// (never past the root); a trailing dot segment leaves a trailing `/`.
pub(crate) fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match dots(segment) {
            Some(1) => trailing_slash = i == last,
            Some(2) => {
                kept.pop();
                trailing_slash = i == last;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(target: &str) -> String {
        let uri: Uri = target.parse().unwrap();
        without_dot_segments(&uri).map_or_else(|| target.to_owned(), |u| u.to_string())
    }

    #[test]
    fn dot_segments_go_and_nothing_else_changes() {
        assert_eq!(normal("/public/../admin"), "/admin");
        assert_eq!(normal("/a/./b/../c?x=/../y"), "/a/c?x=/../y");
        assert_eq!(normal("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normal("/a/%2e%2E/b"), "/b");
        assert_eq!(normal("/a/.."), "/");
        assert_eq!(normal("/a/b/."), "/a/b/");
        assert_eq!(normal("/a/..b/.c/..."), "/a/..b/.c/...");
        assert_eq!(normal("/a%2F..%2Fb"), "/a%2F..%2Fb", "%2F is no separator");
        assert_eq!(normal("/a//b"), "/a//b");
        assert_eq!(normal("http://h/x/../y"), "http://h/y");
    }
}
