//! Progress reporting: the engine calls these hooks; the CLI draws bars.

pub trait Progress: Send + Sync {
    /// A phase begins; `total_bytes` is 0 when unknown.
    fn begin(&self, _phase: &str, _total_bytes: u64) {}
    /// A phase counted in items (e.g. manifests) rather than bytes begins.
    fn begin_items(&self, phase: &str, total_items: u64) {
        self.begin(phase, total_items)
    }
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
