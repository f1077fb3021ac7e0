//! A route's `compress` list and its `compress_*` settings.

use super::Checker;
use crate::config::file::RouteFile;
use toml::Spanned;

impl Checker {
    /// A route's `compress` and its `compress_*` settings (which need it).
    pub(super) fn compression(
        &mut self,
        route: &RouteFile,
        i: usize,
    ) -> Option<crate::config::Compression> {
        use crate::config::{Compression, Encoding};
        let field = format!("routes[{i}]");
        let Some(list) = &route.compress else {
            let stray = [
                route.compress_min_bytes.as_ref().map(Spanned::span),
                route.compress_levels.as_ref().map(Spanned::span),
            ];
            if let Some(span) = stray.into_iter().flatten().next() {
                self.report(
                    span,
                    format!("{field}: compress_* settings need compress = [...]"),
                );
            }
            return None;
        };
        let mut encodings = Vec::new();
        for name in list.get_ref() {
            match Encoding::ALL.iter().find(|e| e.as_str() == name.get_ref()) {
                Some(&encoding) if !encodings.contains(&encoding) => encodings.push(encoding),
                Some(_) => {}
                None => self.report(
                    name.span(),
                    format!(
                        "{field}.compress: {:?} is not \"zstd\", \"br\" or \"gzip\"",
                        name.get_ref()
                    ),
                ),
            }
        }
        if encodings.is_empty() {
            self.report(
                list.span(),
                format!("{field}.compress: name at least one of \"zstd\", \"br\", \"gzip\""),
            );
            return None;
        }
        let min_bytes = self.int(
            &route.compress_min_bytes,
            &format!("{field}.compress_min_bytes"),
            0..=i64::MAX,
            Compression::DEFAULT_MIN_BYTES,
        );
        let types = match &route.compress_types {
            None => Compression::DEFAULT_TYPES.map(str::to_owned).to_vec(),
            Some(types) => types
                .iter()
                .filter_map(|t| {
                    let text = t.get_ref().to_ascii_lowercase();
                    let valid = text.split_once('/').is_some_and(|(a, b)| {
                        !a.is_empty() && !b.is_empty() && !text.contains([';', ' '])
                    });
                    if !valid {
                        self.report(t.span(), format!("{field}.compress_types: {:?} is not a media type (type/subtype or type/*)", t.get_ref()));
                    }
                    valid.then_some(text)
                })
                .collect(),
        };
        let mut levels = Compression::DEFAULT_LEVELS;
        if let Some(given) = &route.compress_levels {
            let given = given.get_ref();
            for (value, encoding, range) in [
                (&given.gzip, Encoding::Gzip, 0..=9),
                (&given.br, Encoding::Brotli, 0..=11),
                (&given.zstd, Encoding::Zstd, 1..=22),
            ] {
                let default = levels[encoding as usize];
                levels[encoding as usize] = self.int(
                    value,
                    &format!("{field}.compress_levels.{}", encoding.as_str()),
                    range,
                    default,
                );
            }
        }
        Some(Compression {
            encodings,
            min_bytes,
            types,
            levels,
        })
    }
}
