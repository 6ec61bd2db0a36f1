//! The loadgen progress line: how many requests finished, and how many of
//! them 2xx, shown on stderr while the run goes on.
//!
//! It must never write to stdout (stdout carries the report, which scripts
//! read with `--json`) and must never slow the workers: they only bump two
//! relaxed counters.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests finished so far, bumped by the workers.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Requests finished (answered or failed).
    done: AtomicU64,
    /// Requests finished 2xx.
    done_ok: AtomicU64,
}

impl Progress {
    /// Count one finished request.
    pub fn finished(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one finished request as 2xx (after [`Progress::finished`]).
    pub fn answered_ok(&self) {
        self.done_ok.fetch_add(1, Ordering::Relaxed);
    }
}

/// A progress line on stderr until `finished` is set, rewritten in place
/// every second — only when stderr is a terminal (logs and CI get none).
pub(super) async fn show(progress: Arc<Progress>, started: Instant, finished: Arc<AtomicBool>) {
    let tty = std::io::stderr().is_terminal();
    if !tty {
        return;
    }
    let every = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at((started + every).into(), every);
    let mut last = 0;
    let mut printed = false;
    while !finished.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        }
        let done = progress.done.load(Ordering::Relaxed);
        let ok = progress.done_ok.load(Ordering::Relaxed);
        let line = format!(
            "[{:>6.1}s] sent {done}  2xx {ok}  other {}  ~{:.0} req/s",
            started.elapsed().as_secs_f64(),
            done - ok,
            (done - last) as f64 / every.as_secs_f64()
        );
        last = done;
        printed = true;
        eprint!("\r{line}   ");
    }
    if printed {
        eprintln!();
    }
}
