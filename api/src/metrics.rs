//! A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
//! text exposition format at `/metrics`.
//!
//! The registry lives in [`AppState`](crate::AppState) (no globals); the HTTP layer records
//! requests and latency by matched route, and the controller can publish its own series through
//! the same handle ([`Metrics::set_gauge`], [`Metrics::inc_counter`], [`Metrics::observe`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Histogram bucket bounds in seconds, suited to request and reconcile latencies.
const BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    Histogram { buckets: [u64; BUCKETS.len()], count: u64, sum: f64 },
}

#[derive(Debug)]
struct Family {
    kind: FamilyKind,
    help: String,
    series: BTreeMap<Labels, Series>,
}

/// A cloneable handle to one metrics registry.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_series(
        &self,
        name: &str,
        help: &str,
        kind: FamilyKind,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut Series),
    ) {
        let mut fams = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let fam = fams.entry(name.to_owned()).or_insert_with(|| Family {
            kind,
            help: help.to_owned(),
            series: BTreeMap::new(),
        });
        if fam.kind != kind {
            tracing::warn!(metric = name, "metric registered twice with different types; ignored");
            return;
        }
        let series = fam.series.entry(owned(labels)).or_insert_with(|| match kind {
            FamilyKind::Histogram => {
                Series::Histogram { buckets: [0; BUCKETS.len()], count: 0, sum: 0.0 }
            }
            _ => Series::Value(0.0),
        });
        f(series);
    }

    /// Adds `by` to a counter.
    pub fn inc_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], by: f64) {
        self.with_series(name, help, FamilyKind::Counter, labels, |s| {
            if let Series::Value(v) = s {
                *v += by.max(0.0);
            }
        });
    }

    /// Sets a gauge.
    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.with_series(name, help, FamilyKind::Gauge, labels, |s| {
            if let Series::Value(v) = s {
                *v = value;
            }
        });
    }

    /// Records one observation (in seconds) in a histogram.
    pub fn observe(&self, name: &str, help: &str, labels: &[(&str, &str)], seconds: f64) {
        self.with_series(name, help, FamilyKind::Histogram, labels, |s| {
            if let Series::Histogram { buckets, count, sum } = s {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    if seconds <= *bound {
                        buckets[i] += 1;
                    }
                }
                *count += 1;
                *sum += seconds;
            }
        });
    }

    /// The current value of a counter or gauge, if it exists (for tests and health checks).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let fams = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        match fams.get(name)?.series.get(&owned(labels))? {
            Series::Value(v) => Some(*v),
            Series::Histogram { count, .. } => Some(*count as f64),
        }
    }

    /// Renders every family in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind.as_str());
            for (labels, series) in &fam.series {
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{} {}", fmt_labels(labels, None), fmt_f64(*v));
                    }
                    Series::Histogram { buckets, count, sum } => {
                        for (i, bound) in BUCKETS.iter().enumerate() {
                            let le = fmt_f64(*bound);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(labels, Some(&le)),
                                buckets[i]
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            fmt_labels(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            fmt_labels(labels, None),
                            fmt_f64(*sum)
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", fmt_labels(labels, None));
                    }
                }
            }
        }
        out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_value(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_escaped_labels() {
        let m = Metrics::new();
        m.inc_counter("reqs_total", "Requests.", &[("route", "/a\"b")], 2.0);
        m.inc_counter("reqs_total", "Requests.", &[("route", "/a\"b")], 1.0);
        let text = m.render();
        assert!(text.contains("# TYPE reqs_total counter"), "{text}");
        assert!(text.contains("reqs_total{route=\"/a\\\"b\"} 3"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let m = Metrics::new();
        m.observe("lat_seconds", "Latency.", &[], 0.003);
        m.observe("lat_seconds", "Latency.", &[], 5.0);
        let text = m.render();
        assert!(text.contains("lat_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"10\"} 2"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("lat_seconds_count 2"), "{text}");
    }

    #[test]
    fn gauges_take_the_last_value() {
        let m = Metrics::new();
        m.set_gauge("queue_depth", "Depth.", &[], 4.0);
        m.set_gauge("queue_depth", "Depth.", &[], 1.0);
        assert_eq!(m.value("queue_depth", &[]), Some(1.0));
    }
}
