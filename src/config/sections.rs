//! Reading the file into its serde mirror one section at a time (each element of an array of
//! tables on its own), so that every type error in the file is reported, not only the first.

use super::file::FileConfig;
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// The top-level keys of a config file.
const SECTIONS: [&str; 11] = [
    "listeners",
    "timeouts",
    "limits",
    "routes",
    "pools",
    "admin",
    "reload",
    "access_log",
    "notify",
    "fleet",
    "acme",
];

/// Every type error found reading the file, as (byte offset, message), and whether a section
/// or element could not be read at all (then what the checks would say of the rest may be
/// caused by its absence).
#[derive(Debug, Default)]
pub(super) struct TypeErrors {
    pub errors: Vec<(usize, String)>,
    pub dropped: bool,
}

/// The file's sections; a section or element with a type error is read again without the key
/// at fault, so that every type error in it is reported and what remains can still be checked.
/// A syntax error is the one error returned.
pub(super) fn read(text: &str) -> Result<(FileConfig, TypeErrors), toml::de::Error> {
    let root = DeTable::parse(text)?;
    let mut found = TypeErrors::default();
    let mut file = FileConfig::default();
    for (key, value) in root.into_inner() {
        let found = &mut found;
        match key.get_ref().as_ref() {
            "listeners" => file.listeners = elements(value, found),
            "routes" => file.routes = elements(value, found),
            "pools" => file.pools = elements(value, found),
            "timeouts" => file.timeouts = section(value, found).unwrap_or_default(),
            "limits" => file.limits = section(value, found).unwrap_or_default(),
            "admin" => file.admin = section(value, found),
            "reload" => file.reload = section(value, found).unwrap_or_default(),
            "access_log" => file.access_log = section(value, found).unwrap_or_default(),
            "notify" => file.notify = section(value, found).unwrap_or_default(),
            "fleet" => file.fleet = section(value, found),
            "acme" => file.acme = section(value, found),
            other => found.errors.push((
                key.span().start,
                format!(
                    "unknown key `{other}`, expected one of {}",
                    SECTIONS.join(", ")
                ),
            )),
        }
    }
    Ok((file, found))
}

/// How many keys one section may lose before reading it is given up.
const MAX_ERRORS_PER_SECTION: usize = 64;

/// One section; each type error recorded, and the key at fault left out until it reads (or
/// nothing more can be left out).
fn section<T: DeserializeOwned>(
    mut value: Spanned<DeValue<'_>>,
    found: &mut TypeErrors,
) -> Option<T> {
    let span = value.span();
    for tries in 0..MAX_ERRORS_PER_SECTION {
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(read) => return Some(read),
            Err(err) => {
                // A required key left out for its type error is missing now: nothing new.
                if tries == 0 || !err.message().starts_with("missing field") {
                    let at = err.span().map_or(span.start, |span| span.start);
                    found.errors.push((at, err.message().trim_end().to_owned()));
                    if leave_out(&mut value, at) {
                        continue;
                    }
                }
                break;
            }
        }
    }
    found.dropped = true;
    None
}

/// Removes the innermost key or array element (below `value` itself) whose value holds `at`;
/// returns whether there was one. Every child is searched: the span of a table made by a
/// `[header]` covers the header, not the keys under it.
fn leave_out(value: &mut Spanned<DeValue<'_>>, at: usize) -> bool {
    let holds = |v: &Spanned<DeValue<'_>>| v.span().contains(&at);
    match value.get_mut() {
        DeValue::Table(table) => {
            let mut hit = None;
            for (key, child) in table.iter_mut() {
                if leave_out(child, at) {
                    return true;
                }
                if hit.is_none() && (holds(child) || key.span().contains(&at)) {
                    hit = Some(key.get_ref().to_string());
                }
            }
            hit.is_some_and(|key| table.remove(key.as_str()).is_some())
        }
        DeValue::Array(items) => {
            for item in items.as_mut() {
                if leave_out(item, at) {
                    return true;
                }
            }
            let Some(i) = items.iter().position(holds) else {
                return false;
            };
            let mut kept = DeArray::new();
            for (j, item) in items.iter().enumerate() {
                if j != i {
                    kept.push(item.clone());
                }
            }
            *items = kept;
            true
        }
        _ => false,
    }
}

/// Each element of an array of tables that reads; the others' errors recorded.
fn elements<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    found: &mut TypeErrors,
) -> Vec<Spanned<T>> {
    let start = value.span().start;
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| section::<Spanned<T>>(item, found))
            .collect(),
        _ => {
            found
                .errors
                .push((start, "expected an array of tables".to_owned()));
            found.dropped = true;
            Vec::new()
        }
    }
}

/// The message for a key defined twice, `at` pointing at the second: the key, its table, and
/// where it was first defined.
pub(super) fn duplicate_key(text: &str, at: usize) -> String {
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let header = |line: &str| {
        let line = line.trim();
        line.starts_with('[').then(|| {
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        })
    };
    let key_of = |line: &str| {
        line.split_once('=')
            .map(|(key, _)| key.trim().trim_matches('"').to_owned())
    };
    let lines_before = || {
        text[..line_start]
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .collect::<Vec<_>>()
    };
    if let Some(table) = header(line) {
        let first = lines_before()
            .into_iter()
            .find(|(_, l)| header(l).as_deref() == Some(table.as_str()));
        return match first {
            Some((n, _)) => format!("duplicate table [{table}], first defined at line {n}"),
            None => format!("duplicate table [{table}]"),
        };
    }
    let Some(key) = key_of(line) else {
        return "duplicate key".to_owned();
    };
    // The table the key is in starts at the nearest header above it.
    let before = lines_before();
    let table_start = before.iter().rposition(|(_, l)| header(l).is_some());
    let table = table_start
        .and_then(|i| header(before[i].1))
        .unwrap_or_else(|| "the top level".to_owned());
    let first = before[table_start.map_or(0, |i| i + 1)..]
        .iter()
        .find(|(_, l)| key_of(l).as_deref() == Some(key.as_str()));
    match first {
        Some((n, _)) => {
            format!("duplicate key `{key}` in [{table}], first defined at line {n}")
        }
        None => format!("duplicate key `{key}` in [{table}]"),
    }
}
