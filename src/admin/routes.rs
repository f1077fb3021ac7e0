//! `GET /api/routes`: every route in precedence order, or, given a sample request
//! (`?host=&path=&method=&query=&header=name:value`), the route it would take and why it
//! would go there: an operator's "why did this go there?".

use super::reply::Rejection;
use crate::route::{Asked, Target};
use crate::snapshot::Snapshot;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

/// Longest sample path or query accepted.
const MAX_SAMPLE: usize = 8 * 1024;

/// The listing, or where the sample request in `query` would go.
pub(super) fn explain(snapshot: &Snapshot, query: Option<&str>) -> Result<Value, Rejection> {
    let bad = |message: String| Rejection::new(StatusCode::BAD_REQUEST, message);
    let (mut host, mut path, mut method, mut sample_query) = (None, None, Method::GET, None);
    let mut headers = HeaderMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if value.len() > MAX_SAMPLE {
            return Err(bad(format!("{key}: longer than {MAX_SAMPLE} bytes")));
        }
        match &*key {
            "host" => host = Some(value.into_owned()),
            "path" if value.starts_with('/') => path = Some(value.into_owned()),
            "path" => return Err(bad("path: must start with '/'".to_owned())),
            "method" => {
                method = Method::from_bytes(value.as_bytes())
                    .map_err(|_| bad(format!("method: {value:?} is not a method")))?;
            }
            "query" => sample_query = Some(value.into_owned()),
            "header" => {
                let (name, value) = value
                    .split_once(':')
                    .ok_or_else(|| bad("header: give name:value".to_owned()))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| bad(format!("header: {name:?} is not a header name")))?;
                let value = HeaderValue::from_str(value.trim())
                    .map_err(|_| bad("header: the value is not a header value".to_owned()))?;
                headers.append(name, value);
            }
            other => {
                return Err(bad(format!(
                    "{other}: not a parameter (host, path, method, query, header)"
                )));
            }
        }
    }
    let Some(path) = path else {
        return Ok(json!({ "routes": snapshot.router.listing() }));
    };
    let asked = Asked {
        method: &method,
        headers: &headers,
        query: sample_query.as_deref(),
    };
    let request = json!({
        "host": host,
        "path": path,
        "method": method.as_str(),
        "query": sample_query,
    });
    let Some(route) = snapshot.router.find(host.as_deref(), &path, &asked) else {
        return Ok(json!({ "request": request, "route": null, "answer": "404: no route matches" }));
    };
    let listed = snapshot
        .router
        .listing()
        .iter()
        .find(|l| *l.name == *route.name)
        .map(|l| l.summary.clone());
    let goes_to = match &route.target {
        Target::Pool { pool, .. } => json!({ "pool": snapshot.pools.get(*pool).map(|p| &*p.name) }),
        Target::Answer(answer) => json!({ "answer": answer.kind.to_string() }),
    };
    Ok(json!({
        "request": request,
        "route": &*route.name,
        "matches": listed,
        "goes_to": goes_to,
    }))
}
