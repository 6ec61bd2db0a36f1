//! The config reload series: attempts by result, and the last attempt's
//! success, time and duration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{add, ResultLabel};

/// The config reload series.
#[derive(Debug, Clone)]
pub(super) struct ReloadSeries {
    total: Family<ResultLabel, Counter>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_ok: Gauge,
    last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl ReloadSeries {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let series = ReloadSeries {
            total: add(
                registry,
                "config_reloads",
                "Configuration reloads by result (ok, error), from SIGHUP, POST /reload or a file change",
                Family::default(),
            ),
            last_success: add(
                registry,
                "config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully (startup included), epoch seconds",
                Gauge::default(),
            ),
            last_ok: add(
                registry,
                "config_last_reload_successful",
                "1 if the last reload attempt succeeded (or none was made), 0 if it failed",
                Gauge::default(),
            ),
            last_duration: add(
                registry,
                "config_last_reload_duration_seconds",
                "How long the last reload attempt took (reading, validating, swapping)",
                Gauge::default(),
            ),
        };
        for result in ["ok", "error"] {
            let _ = series.total.get_or_create(&ResultLabel {
                result: result.to_owned(),
            });
        }
        series.last_success.set(epoch_secs());
        series.last_ok.set(1);
        series
    }
}

impl ReloadSeries {
    /// Count one reload attempt that took `took`.
    pub(super) fn record(&self, ok: bool, took: Duration) {
        self.total
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.last_ok.set(i64::from(ok));
        self.last_duration.set(took.as_secs_f64());
        if ok {
            self.last_success.set(epoch_secs());
        }
    }
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
