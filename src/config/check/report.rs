//! Problems found in a config file, each located by line and column and naming its field.

use std::fmt;

/// One problem found in a config file, located by 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem is listed.
    #[error("{}", DisplayProblems { origin, problems })]
    Invalid {
        /// The file (or other origin) the text came from.
        origin: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

struct DisplayProblems<'a> {
    origin: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for DisplayProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.origin, p.line, p.col, p.message)?;
        }
        Ok(())
    }
}

pub(super) fn locate(text: &str, at: usize, message: String) -> Problem {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Problem {
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
        message,
    }
}

/// The dotted name of the value at `at` (`pools.backends.weight`), when `at` is inside a
/// `key = value` line: TOML's own type errors point at the value but do not name its key.
pub(super) fn field_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = before[line_start..].split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|line| {
        let line = line.trim();
        let header = line
            .strip_prefix("[[")
            .and_then(|l| l.split_once("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.split_once(']')))?;
        Some(header.0.trim())
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_offsets_as_one_based_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(locate(text, 0, String::new()).line, 1);
        let p = locate(text, text.find('=').unwrap(), String::new());
        assert_eq!((p.line, p.col), (1, 3));
        let p = locate(text, text.rfind('=').unwrap(), String::new());
        assert_eq!((p.line, p.col), (2, 4));
    }

    #[test]
    fn names_the_field_of_a_value_from_its_table_and_key() {
        let text = "[[pools]]\nname = \"p\"\n[[pools.backends]]\nweight = \"x\"\n";
        assert_eq!(
            field_at(text, text.find("\"x").unwrap()).as_deref(),
            Some("pools.backends.weight")
        );
        assert_eq!(field_at(text, 0), None);
        let top = "colour = 1\n";
        assert_eq!(field_at(top, 9).as_deref(), Some("colour"));
    }
}
