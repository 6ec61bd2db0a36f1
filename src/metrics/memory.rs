//! `replay_guard_memory_store_entries` and `_capacity`: the memory store's
//! size, read at scrape time once a memory store is attached.
//!
//! This module must never hold the store itself, only a way to count it.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// The memory store's size, read at scrape time.
pub(super) struct MemorySource {
    pub(super) capacity: usize,
    pub(super) entries: Box<dyn Fn() -> usize + Send + Sync>,
}

/// `replay_guard_memory_store_entries` and `_capacity`, once a memory
/// store was attached ([`Metrics::memory_store`]); absent otherwise.
#[derive(Clone, Default)]
pub(super) struct MemoryCollector(pub(super) Arc<OnceLock<MemorySource>>);

impl std::fmt::Debug for MemoryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCollector")
            .field("attached", &self.0.get().is_some())
            .finish()
    }
}

impl Collector for MemoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.0.get() else {
            return Ok(());
        };
        let series = [
            (
                "memory_store_entries",
                "Live records in the memory store",
                (source.entries)(),
            ),
            (
                "memory_store_capacity",
                "Records the memory store holds at most ([store.memory] max_entries)",
                source.capacity,
            ),
        ];
        for (name, help, value) in series {
            let gauge = ConstGauge::new(value as i64);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
