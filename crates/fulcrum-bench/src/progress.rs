//! Progress while a run goes on, kept out of the measuring code: the runner
//! reports each finished request to a [`Progress`], and the CLI decides how
//! (and whether) to draw it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::record::RequestRecord;

pub trait Progress: Send + Sync {
    /// A request finished (successfully or not).
    fn on_request(&self, _record: &RequestRecord) {}
    /// The run is over; the report follows.
    fn on_finish(&self) {}
}

/// For tests and for callers that draw their own.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A bar on stderr (hidden when stderr is not a terminal): finished out of
/// the expected number of requests, or a spinner for runs bounded by time.
pub struct TerminalProgress {
    bar: ProgressBar,
    num_failed: AtomicUsize,
}

impl TerminalProgress {
    pub fn new(num_requests: Option<usize>) -> TerminalProgress {
        let bar = match num_requests {
            Some(n) => ProgressBar::new(n as u64).with_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} requests, {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} requests, {msg}")
                    .expect("valid template"),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message("0 failed");
        TerminalProgress {
            bar,
            num_failed: AtomicUsize::new(0),
        }
    }
}

impl Progress for TerminalProgress {
    fn on_request(&self, record: &RequestRecord) {
        if !record.is_ok() {
            let failed = self.num_failed.fetch_add(1, Ordering::Relaxed) + 1;
            self.bar.set_message(format!("{failed} failed"));
        }
        self.bar.inc(1);
    }

    fn on_finish(&self) {
        self.bar.finish_and_clear();
    }
}
