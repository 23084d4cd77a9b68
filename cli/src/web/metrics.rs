//! `/metrics`: Prometheus text format. Two sources: the journal of this data dir (what rbk
//! processes did here since `rbk serve` started: counters and histograms, as Prometheus
//! expects them, start at zero with the process) and the catalog (what the store holds now,
//! whoever wrote it: gauges).

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

use rbk_engine::layout::journal::{Entry, Event};

use super::catalog::Catalog;

/// Backup durations from a tenth of a second (an unchanged module) to half an hour.
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Commit pauses of live snapshots, from 100 µs to 10 s.
const PAUSE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    last_success: GaugeVec,
    backups: GaugeVec,
    duration: HistogramVec,
    added: CounterVec,
    failures: CounterVec,
    pause: HistogramVec,
    stored_bytes: Gauge,
    module_stored: GaugeVec,
    packs: Gauge,
    store_up: Gauge,
    gc_last_run: Gauge,
    gc_freed: CounterVec,
    gc_runs: CounterVec,
    mirror_pending: Gauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails for malformed names or duplicate registrations: fixed at compile time.
    r.expect("metric definitions are valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = must(GaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = must(CounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = must(HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["module"],
            ));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = must(Gauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        Metrics {
            last_success: gauge_vec(
                "rbk_backup_last_success_timestamp_seconds",
                "When the newest readable backup of the module in the store was taken (Unix seconds).",
                &["module"],
            ),
            backups: gauge_vec(
                "rbk_backups",
                "Backups of the module in the store.",
                &["module"],
            ),
            duration: histogram(
                "rbk_backup_duration_seconds",
                "How long backups taken on this data dir took, since this process started.",
                DURATION_BUCKETS,
            ),
            added: counter_vec(
                "rbk_backup_added_bytes_total",
                "Bytes backups taken on this data dir added to the store (new chunks, compressed, and manifests), since this process started.",
                &["module"],
            ),
            failures: counter_vec(
                "rbk_backup_failures_total",
                "Backups on this data dir that failed, since this process started.",
                &["module"],
            ),
            pause: histogram(
                "rbk_commit_pause_seconds",
                "How long commits of a running module were paused for a backup's snapshot.",
                PAUSE_BUCKETS,
            ),
            stored_bytes: gauge("rbk_store_stored_bytes", "Bytes of the packs in the store."),
            module_stored: gauge_vec(
                "rbk_module_stored_bytes",
                "What the module's backups occupy in the store, as rbk stats counts it, as of the last periodic GC of rbk serve.",
                &["module"],
            ),
            packs: gauge("rbk_store_packs", "Packs in the store."),
            store_up: gauge(
                "rbk_store_up",
                "1 when the last look at the store succeeded, else 0.",
            ),
            gc_last_run: gauge(
                "rbk_gc_last_run_timestamp_seconds",
                "When a GC on this data dir last finished (Unix seconds; 0: none recorded).",
            ),
            gc_freed: counter_vec(
                "rbk_gc_freed_bytes_total",
                "Bytes GC runs on this data dir freed, since this process started.",
                &["side"],
            ),
            gc_runs: counter_vec(
                "rbk_gc_runs_total",
                "GC runs on this data dir since this process started, by outcome.",
                &["side", "outcome"],
            ),
            mirror_pending: gauge(
                "rbk_mirror_pending_objects",
                "Manifests and packs the mirror lacks, as of its last sync by this process.",
            ),
            registry,
        }
    }

    /// Takes in journal entries recorded before this process started: only what gauges
    /// need (the last GC run), counters stay at zero.
    pub fn seed(&self, history: &[Entry]) {
        if let Some(e) = history
            .iter()
            .rev()
            .find(|e| matches!(e.event, Event::Gc { .. }))
        {
            self.gc_last_run.set(e.ms as f64 / 1000.0);
        }
    }

    /// Takes in an entry recorded since this process started.
    pub fn observe(&self, entry: &Entry) {
        match &entry.event {
            Event::Backup {
                module,
                seconds,
                added_bytes,
                pause_seconds,
                ..
            } => {
                self.duration
                    .with_label_values(&[module.as_str()])
                    .observe(*seconds);
                self.added
                    .with_label_values(&[module.as_str()])
                    .inc_by(*added_bytes as f64);
                self.failures.with_label_values(&[module.as_str()]);
                if let Some(p) = pause_seconds {
                    self.pause.with_label_values(&[module.as_str()]).observe(*p);
                }
            }
            Event::BackupFailed { module, .. } => {
                self.failures.with_label_values(&[module.as_str()]).inc();
            }
            Event::Gc {
                side, bytes_freed, ..
            } => {
                self.gc_last_run.set(entry.ms as f64 / 1000.0);
                self.gc_freed
                    .with_label_values(&[side.as_str()])
                    .inc_by(*bytes_freed as f64);
                self.gc_runs.with_label_values(&[side.as_str(), "ok"]).inc();
            }
            Event::GcFailed { side, .. } => {
                self.gc_runs
                    .with_label_values(&[side.as_str(), "failed"])
                    .inc();
            }
        }
    }

    /// Sets the gauges that describe the store from `catalog`.
    pub fn set_store(&self, catalog: &Catalog) {
        self.store_up
            .set(if catalog.error.is_none() { 1.0 } else { 0.0 });
        if catalog.refreshed.is_none() {
            return;
        }
        self.stored_bytes.set(catalog.pack_bytes as f64);
        self.packs.set(catalog.packs as f64);
        self.last_success.reset();
        self.backups.reset();
        for (module, ids) in &catalog.modules {
            self.backups
                .with_label_values(&[module.as_str()])
                .set(ids.len() as f64);
            if let Some(s) = catalog.newest_good(module) {
                self.last_success
                    .with_label_values(&[module.as_str()])
                    .set(s.created_ms as f64 / 1000.0);
            }
            // Present from the start, so that `increase(...)` sees the first failure.
            self.failures.with_label_values(&[module.as_str()]);
            self.added.with_label_values(&[module.as_str()]);
        }
    }

    pub fn set_module_stored(&self, by_module: &std::collections::BTreeMap<String, u64>) {
        self.module_stored.reset();
        for (module, bytes) in by_module {
            self.module_stored
                .with_label_values(&[module.as_str()])
                .set(*bytes as f64);
        }
    }

    pub fn set_mirror_pending(&self, pending: u64) {
        self.mirror_pending.set(pending as f64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
