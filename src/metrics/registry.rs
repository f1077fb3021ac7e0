//! Where every value lives and how it is written out: one registry of atomics per proxy, and
//! the Prometheus text exposition written straight from it. Rendering reads structured keys,
//! so the caller decides which series are shown (those of pools and backends that still
//! exist) by key, never by reading rendered text back.

use super::{DURATION_BUCKETS, Kind, TABLE};
use metrics::Key;
use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};
use metrics_util::registry::{AtomicStorage, Registry};
use metrics_util::storage::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

/// The series of one proxy.
pub(super) struct Series {
    pub values: Registry<Key, AtomicStorage>,
    /// Histogram samples folded into their buckets; touched by upkeep and scrapes only.
    buckets: Mutex<HashMap<Key, Histogram>>,
}

impl Series {
    pub fn new() -> Self {
        Self {
            values: Registry::atomic(),
            buckets: Mutex::default(),
        }
    }

    /// Folds the samples recorded since the last call into their buckets.
    pub fn fold_samples(&self) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        self.values.visit_histograms(|key, samples| {
            samples.clear_with(|samples| {
                buckets
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Histogram::new(&DURATION_BUCKETS).expect("the buckets are not empty")
                    })
                    .record_many(samples);
            });
        });
    }

    /// The text exposition of the series `keep` accepts, family by family in `TABLE` order,
    /// series sorted by labels.
    pub fn render(&self, keep: impl Fn(&Key) -> bool) -> String {
        self.fold_samples();
        let mut families: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
        let mut add = |key: &Key, value| {
            if keep(key) {
                families
                    .entry(key.name().to_owned())
                    .or_default()
                    .insert(labels(key), value);
            }
        };
        self.values.visit_counters(|key, value| {
            add(key, Value::Counter(value.load(Ordering::Relaxed)));
        });
        self.values.visit_gauges(|key, value| {
            add(
                key,
                Value::Gauge(f64::from_bits(value.load(Ordering::Relaxed))),
            );
        });
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, histogram) in buckets.iter() {
            add(key, Value::Histogram(histogram));
        }
        let mut out = String::new();
        for &(name, kind, help) in TABLE {
            let Some(series) = families.get(name) else {
                continue;
            };
            write_help_line(&mut out, name, None, None, help);
            write_type_line(&mut out, name, None, None, kind.as_str());
            for (labels, value) in series {
                value.write(&mut out, name, labels);
            }
            out.push('\n');
        }
        out
    }
}

/// One series' value at render time.
enum Value<'a> {
    Counter(u64),
    Gauge(f64),
    Histogram(&'a Histogram),
}

impl Value<'_> {
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        match self {
            Self::Counter(value) => line(out, name, "", labels, "", value),
            Self::Gauge(value) => line(out, name, "", labels, "", value),
            Self::Histogram(histogram) => {
                for (bound, count) in histogram.buckets() {
                    line(
                        out,
                        name,
                        "_bucket",
                        labels,
                        &format!("le=\"{bound}\""),
                        count,
                    );
                }
                let count = histogram.count();
                line(out, name, "_bucket", labels, "le=\"+Inf\"", count);
                line(out, name, "_sum", labels, "", histogram.sum());
                line(out, name, "_count", labels, "", count);
            }
        }
    }
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// `key`'s labels as `k="v",…`, values escaped.
fn labels(key: &Key) -> String {
    let mut out = String::new();
    for label in key.labels() {
        if !out.is_empty() {
            out.push(',');
        }
        let value = sanitize_label_value(label.value());
        let _ = write!(out, "{}=\"{value}\"", label.key());
    }
    out
}

/// One sample line: `name{labels,extra} value`.
fn line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: &str,
    value: impl std::fmt::Display,
) {
    let _ = match (labels.is_empty(), extra.is_empty()) {
        (true, true) => writeln!(out, "{name}{suffix} {value}"),
        (false, true) => writeln!(out, "{name}{suffix}{{{labels}}} {value}"),
        (true, false) => writeln!(out, "{name}{suffix}{{{extra}}} {value}"),
        (false, false) => writeln!(out, "{name}{suffix}{{{labels},{extra}}} {value}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Label;
    use std::sync::Arc;

    #[test]
    fn renders_each_family_once_with_only_the_kept_series() {
        let series = Series::new();
        let key = |pool: &str| {
            Key::from_parts(
                super::super::NO_BACKEND,
                vec![Label::new("pool", pool.to_owned())],
            )
        };
        series
            .values
            .get_or_create_counter(&key("web"), Arc::clone)
            .store(3, Ordering::Relaxed);
        series
            .values
            .get_or_create_counter(&key("gone"), Arc::clone)
            .store(1, Ordering::Relaxed);
        let duration = Key::from_parts(super::super::REQUEST_DURATION, vec![]);
        series
            .values
            .get_or_create_histogram(&duration, Arc::clone)
            .push(0.2);
        let text = series.render(|key| key.labels().all(|l| l.value() != "gone"));
        assert_eq!(
            text.matches("# TYPE switchyard_pool_no_backend_total")
                .count(),
            1
        );
        assert!(text.contains("switchyard_pool_no_backend_total{pool=\"web\"} 3\n"));
        assert!(!text.contains("gone"), "{text}");
        assert!(text.contains("switchyard_request_duration_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("switchyard_request_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("switchyard_request_duration_seconds_count 1\n"));
    }
}
