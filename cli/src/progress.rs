//! Progress bars for the engine's progress hooks (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use rbk_engine::Progress;
use std::sync::Mutex;

#[derive(Default)]
pub struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(enabled: bool) -> Self {
        Bars {
            enabled,
            bar: Mutex::new(None),
        }
    }
}

impl Bars {
    fn start(&self, phase: &str, total: u64, template: &str) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(phase.to_string());
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total_bytes: u64) {
        self.start(
            phase,
            total_bytes,
            "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
    }

    fn begin_items(&self, phase: &str, total_items: u64) {
        self.start(
            phase,
            total_items,
            "{msg:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        );
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            b.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
