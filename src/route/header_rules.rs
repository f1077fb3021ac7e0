//! Header rules compiled: the pool's and the route's `set`, `add` and `remove`, in that order,
//! as one list walked once per message, with values fixed when the config is applied where
//! they can be and filled from the request's facts where they cannot.

use super::scratch;
use crate::config::lasting;
use crate::config::{HeaderRules, Piece, Variable};
use http::{HeaderMap, HeaderName, HeaderValue};

/// What templates are filled from: the request's facts.
#[derive(Debug)]
pub struct Vars<'a> {
    /// The client's address.
    pub client_ip: &'a HeaderValue,
    /// The request's `X-Request-Id`.
    pub request_id: &'a HeaderValue,
    /// The host the client asked for.
    pub host: Option<&'a HeaderValue>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The route's name.
    pub route: &'a str,
    /// The backend's name, once chosen.
    pub backend: Option<&'a str>,
}

/// Header edits, in the order they apply: every `set`, then every `add`, then every `remove`.
#[derive(Debug)]
pub struct HeaderEdits(Box<[Edit]>);

/// One edit.
#[derive(Debug)]
enum Edit {
    Set(HeaderName, Value),
    Add(HeaderName, Value),
    Remove(HeaderName),
}

/// A header value: fixed, one variable, or text and variables filled in per request.
#[derive(Debug)]
enum Value {
    Fixed(HeaderValue),
    Var(Variable),
    Template(Box<[Piece]>),
}

impl HeaderEdits {
    /// The edits of `rules`, one after the other, for route `route`; `None` when there is
    /// none.
    pub fn of<'a>(
        rules: impl Iterator<Item = &'a HeaderRules> + Clone,
        route: &str,
    ) -> Option<Self> {
        let value = |pieces: &[Piece]| Value::of(pieces, route);
        let sets = rules.clone().flat_map(|r| &r.set);
        let adds = rules.clone().flat_map(|r| &r.add);
        let edits: Box<[Edit]> = sets
            .map(|(name, t)| Edit::Set(lasting::name(name), value(&t.0)))
            .chain(adds.map(|(name, t)| Edit::Add(lasting::name(name), value(&t.0))))
            .chain(
                rules
                    .flat_map(|r| &r.remove)
                    .map(|name| Edit::Remove(name.clone())),
            )
            .collect();
        (!edits.is_empty()).then_some(Self(edits))
    }

    /// Applies the edits to `headers`, filling templates from `vars`.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        for edit in &self.0 {
            match edit {
                Edit::Set(name, value) => {
                    if let Some(value) = value.fill(vars) {
                        headers.insert(name, value);
                    }
                }
                Edit::Add(name, value) => {
                    if let Some(value) = value.fill(vars) {
                        headers.append(name, value);
                    }
                }
                Edit::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }
}

impl Value {
    /// The value of `pieces` on route `route`: `{route}` is known already, and what is then
    /// all text is fixed once.
    fn of(pieces: &[Piece], route: &str) -> Self {
        let mut known: Vec<Piece> = Vec::new();
        for piece in pieces {
            let piece = match piece {
                Piece::Var(Variable::Route) => Piece::Text(route.to_owned()),
                other => other.clone(),
            };
            match (known.last_mut(), piece) {
                (Some(Piece::Text(before)), Piece::Text(text)) => before.push_str(&text),
                (_, piece) => known.push(piece),
            }
        }
        match known.as_slice() {
            [] => Self::Fixed(HeaderValue::from_static("")),
            // Checked as a header value when the config was read (a route name is one too).
            [Piece::Text(text)] => HeaderValue::from_str(text).map_or_else(
                |_| Self::Template(known.clone().into()),
                |value| Self::Fixed(lasting::value(&value)),
            ),
            [Piece::Var(variable)] => Self::Var(*variable),
            _ => Self::Template(known.into()),
        }
    }

    /// The value for this request; `None` if a variable makes it invalid (a header is then
    /// left out rather than sent broken).
    #[inline(always)]
    fn fill(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        match self {
            Self::Fixed(value) => Some(value.clone()),
            Self::Var(variable) => vars.value(*variable),
            Self::Template(pieces) => fill_template(pieces, vars),
        }
    }
}

/// `pieces` filled from `vars`, written where the request's other made bytes are.
fn fill_template(pieces: &[Piece], vars: &Vars<'_>) -> Option<HeaderValue> {
    fn text<'a>(piece: &'a Piece, vars: &'a Vars<'_>) -> &'a [u8] {
        match piece {
            Piece::Text(text) => text.as_bytes(),
            Piece::Var(variable) => vars.get(*variable),
        }
    }
    let room = pieces.iter().map(|p| text(p, vars).len()).sum();
    let bytes = scratch::cut(room, |out| {
        for piece in pieces {
            out.extend_from_slice(text(piece, vars));
        }
    });
    HeaderValue::from_maybe_shared(bytes).ok()
}

/// `text` as a header value, written where the request's other made bytes are.
fn copied(text: &str) -> Option<HeaderValue> {
    let bytes = scratch::cut(text.len(), |out| out.extend_from_slice(text.as_bytes()));
    HeaderValue::from_maybe_shared(bytes).ok()
}

impl Vars<'_> {
    /// One variable as a whole header value: the request's own values are shared, not copied.
    #[inline]
    fn value(&self, variable: Variable) -> Option<HeaderValue> {
        match variable {
            Variable::ClientIp => Some(self.client_ip.clone()),
            Variable::RequestId => Some(self.request_id.clone()),
            Variable::Host => self.host.cloned(),
            Variable::Scheme => Some(HeaderValue::from_static(self.scheme)),
            // Names, not header values yet: copied where the request's other made bytes are.
            Variable::Route => copied(self.route),
            Variable::Backend => self.backend.and_then(copied),
        }
    }

    fn get(&self, variable: Variable) -> &[u8] {
        match variable {
            Variable::ClientIp => self.client_ip.as_bytes(),
            Variable::RequestId => self.request_id.as_bytes(),
            Variable::Host => self.host.map_or(&b""[..], HeaderValue::as_bytes),
            Variable::Scheme => self.scheme.as_bytes(),
            Variable::Route => self.route.as_bytes(),
            Variable::Backend => self.backend.map_or(&b""[..], str::as_bytes),
        }
    }
}
