//! Reading the file into its serde mirror one section at a time (each element of an array of
//! tables on its own), so that every type error in the file is reported, not only the first.

use super::file::FileConfig;
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The top-level keys of a config file.
const SECTIONS: [&str; 10] = [
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
];

/// The file's sections, with every section or element that failed to deserialize left out
/// and reported as (byte offset, message); a syntax error is the one error returned.
pub(super) fn read(text: &str) -> Result<(FileConfig, Vec<(usize, String)>), toml::de::Error> {
    let root = DeTable::parse(text)?;
    let mut errors = Vec::new();
    let mut file = FileConfig::default();
    for (key, value) in root.into_inner() {
        let errors = &mut errors;
        match key.get_ref().as_ref() {
            "listeners" => file.listeners = elements(value, errors),
            "routes" => file.routes = elements(value, errors),
            "pools" => file.pools = elements(value, errors),
            "timeouts" => file.timeouts = section(value, errors).unwrap_or_default(),
            "limits" => file.limits = section(value, errors).unwrap_or_default(),
            "admin" => file.admin = section(value, errors),
            "reload" => file.reload = section(value, errors).unwrap_or_default(),
            "access_log" => file.access_log = section(value, errors).unwrap_or_default(),
            "notify" => file.notify = section(value, errors).unwrap_or_default(),
            "fleet" => file.fleet = section(value, errors),
            other => errors.push((
                key.span().start,
                format!(
                    "unknown key `{other}`, expected one of {}",
                    SECTIONS.join(", ")
                ),
            )),
        }
    }
    Ok((file, errors))
}

/// One section, or `None` with its error recorded.
fn section<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<(usize, String)>,
) -> Option<T> {
    let start = value.span().start;
    T::deserialize(value.into_deserializer())
        .map_err(|err| {
            let at = err.span().map_or(start, |span| span.start);
            errors.push((at, err.message().trim_end().to_owned()));
        })
        .ok()
}

/// Each element of an array of tables that deserializes; the others' errors recorded.
fn elements<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<(usize, String)>,
) -> Vec<Spanned<T>> {
    let start = value.span().start;
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| section::<Spanned<T>>(item, errors))
            .collect(),
        _ => {
            errors.push((start, "expected an array of tables".to_owned()));
            Vec::new()
        }
    }
}
