//! The process's log output: a `tracing_subscriber` writer that hands each
//! formatted line to one background thread, which writes it to stderr.
//!
//! A request task, a signal handler or the shutdown path that logs only
//! ever does a non-blocking `try_send` into a bounded queue. When the
//! queue is full (stderr is slow) or the write fails (a closed pipe, a full
//! disk), the line is dropped and counted in
//! `replay_guard_log_lines_dropped_total` ([`dropped_lines`]).
//!
//! This module must never block, panic or return an error to its caller
//! because of the log output, and never retry a failed write (a dead pipe
//! stays dead).

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before new ones are dropped (a few MB at most).
const QUEUE_LINES: usize = 16_384;

/// The process-wide count of log lines that were never written.
pub fn dropped_lines() -> &'static Counter {
    static DROPPED: OnceLock<Counter> = OnceLock::new();
    DROPPED.get_or_init(Counter::default)
}

/// What the writer thread is asked to do.
enum Message {
    /// Write one formatted line (or event).
    Line(Vec<u8>),
    /// Everything queued before this has been handled: say so.
    Flush(mpsc::Sender<()>),
}

/// The [`MakeWriter`] to give `tracing_subscriber::fmt().with_writer(…)`.
#[derive(Debug, Clone)]
pub struct LogOutput {
    queue: SyncSender<Message>,
}

/// Flushes what is queued (bounded in time) when dropped: keep it alive
/// until the process is about to exit.
#[derive(Debug)]
pub struct FlushGuard {
    queue: SyncSender<Message>,
}

impl LogOutput {
    /// Start the writer thread on `sink` (stderr in the binary).
    pub fn spawn<W: Write + Send + 'static>(sink: W) -> io::Result<(LogOutput, FlushGuard)> {
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("log-output".into())
            .spawn(move || write_lines(sink, lines))?;
        Ok((
            LogOutput {
                queue: queue.clone(),
            },
            FlushGuard { queue },
        ))
    }

    /// The writer on stderr.
    pub fn stderr() -> io::Result<(LogOutput, FlushGuard)> {
        Self::spawn(io::stderr())
    }
}

/// The writer thread: one write per line; a failure drops that line.
fn write_lines<W: Write>(mut sink: W, lines: Receiver<Message>) {
    for message in lines {
        match message {
            Message::Line(line) => {
                if sink.write_all(&line).and_then(|()| sink.flush()).is_err() {
                    dropped_lines().inc();
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let (done, flushed) = mpsc::channel();
        let mut message = Message::Flush(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = flushed.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// One event's writer: `tracing_subscriber` formats an event into a
/// buffer and writes it once; this queues it without blocking.
#[derive(Debug)]
pub struct LineWriter<'a> {
    queue: &'a SyncSender<Message>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.queue.try_send(Message::Line(buf.to_vec())).is_err() {
            dropped_lines().inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { queue: &self.queue }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose every write fails, like a pipe whose reader exited.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_failing_sink_never_fails_the_writer_and_counts_the_lines() {
        let before = dropped_lines().get();
        let (output, guard) = LogOutput::spawn(ClosedPipe).expect("thread");
        for _ in 0..3 {
            let mut writer = output.make_writer();
            assert_eq!(writer.write(b"line\n").expect("never an error"), 5);
            writer.flush().expect("never an error");
        }
        drop(guard);
        assert!(dropped_lines().get() >= before + 3);
    }
}
