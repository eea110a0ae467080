//! Access lines held per thread and written to stdout many at a time.
//!
//! A `write` per line (nginx's `access_log` without `buffer=`) cost a request about 1.3 µs on
//! the benchmark machine (the median of paired runs, benches/README.md), about as much as
//! formatting the line: some 5% of triage's CPU on the success path. Here each thread appends its lines to a batch of its own, behind a lock that
//! only the flusher also takes; the thread writes its batch itself once it holds
//! [`WRITE_AT`] bytes, and the flusher thread writes every batch each `flush_every`, so a line
//! reaches stdout at most that late. The process's exit writes what is left
//! ([`Batches::flush`], from `at_exit`); only a crash loses lines, at most `flush_every` of
//! them. With `flush_every` zero (`[log] access_flush = "off"`) every line is written at once.
//!
//! A batch is always whole lines, so lines of different threads (and the error lines written
//! through `tracing`) never mix within a line; between batches the order is per thread.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// A thread writes its batch itself once it holds this much: a hundred lines or so, one `write`.
pub const WRITE_AT: usize = 32 * 1024;

/// One thread's lines not yet written.
type Batch = Mutex<String>;

/// The batches of the threads that write lines, and where they go.
pub struct Batches {
    flush_every: Duration,
    /// Every thread's batch, in the order the threads first wrote.
    batches: Mutex<Vec<Arc<Batch>>>,
    out: Out,
}

/// Where the lines are written.
enum Out {
    Stdout,
    /// A test's capture.
    #[cfg(test)]
    Memory(Arc<Mutex<String>>),
}

impl Out {
    fn write(&self, text: &str) {
        match self {
            // A full disk or a closed stdout must not fail a request: the lines are lost.
            Out::Stdout => {
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
            #[cfg(test)]
            Out::Memory(captured) => captured
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(text),
        }
    }
}

thread_local! {
    /// This thread's batch, and whose it is (a process has one `Batches`; tests have several).
    static MINE: RefCell<Option<(Weak<Batches>, Arc<Batch>)>> = const { RefCell::new(None) };
}

impl Batches {
    /// Lines to stdout, written at least every `flush_every` (zero: each at once).
    pub fn stdout(flush_every: Duration) -> Arc<Batches> {
        Batches::start(flush_every, Out::Stdout)
    }

    fn start(flush_every: Duration, out: Out) -> Arc<Batches> {
        let batches = Arc::new(Batches {
            flush_every,
            batches: Mutex::new(Vec::new()),
            out,
        });
        if !flush_every.is_zero() {
            let weak = Arc::downgrade(&batches);
            let spawned = std::thread::Builder::new()
                .name("access log".to_owned())
                .spawn(move || flush_until_dropped(&weak, flush_every));
            if let Err(e) = spawned {
                // Lines are still written, by their threads, each batch once it is full, and
                // at exit; only the bound on how late is lost.
                tracing::error!("cannot start the access log's flusher: {e}");
            }
        }
        batches
    }

    /// Appends what `line` writes (whole lines, each ending in `\n`) to this thread's batch,
    /// and writes the batch when it is full or when every line is to be written at once.
    pub fn append(self: &Arc<Self>, line: impl FnOnce(&mut String)) {
        MINE.with(|mine| {
            // Only a line appended from within `line` could find it borrowed: none is.
            let Ok(mut mine) = mine.try_borrow_mut() else {
                return;
            };
            let registered = matches!(&*mine,
                Some((owner, _)) if std::ptr::eq(owner.as_ptr(), Arc::as_ptr(self)));
            if !registered {
                *mine = Some((Arc::downgrade(self), self.register()));
            }
            let Some((_, batch)) = &*mine else {
                return;
            };
            let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
            line(&mut batch);
            if self.flush_every.is_zero() || batch.len() >= WRITE_AT {
                self.out.write(&batch);
                batch.clear();
            }
        });
    }

    /// A new batch for the calling thread.
    fn register(&self) -> Arc<Batch> {
        let batch = Arc::new(Mutex::new(String::with_capacity(WRITE_AT + 1024)));
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&batch));
        batch
    }

    /// Writes every thread's lines not yet written; forgets the batches of threads that ended.
    pub fn flush(&self) {
        // Swapped out under the batch's lock and written after it: a thread appending waits
        // for a swap, never for a write.
        let mut spare = String::with_capacity(WRITE_AT + 1024);
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        batches.retain(|batch| {
            {
                let mut lines = batch.lock().unwrap_or_else(PoisonError::into_inner);
                if !lines.is_empty() {
                    std::mem::swap(&mut *lines, &mut spare);
                }
            }
            if !spare.is_empty() {
                self.out.write(&spare);
                spare.clear();
            }
            // Only this list holds the batch of a thread that ended, and its last lines are
            // out: checked after the swap, so a line appended before the end was taken.
            Arc::strong_count(batch) > 1
        });
    }

    #[cfg(test)]
    fn captured(&self) -> String {
        match &self.out {
            Out::Memory(captured) => captured
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            Out::Stdout => String::new(),
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The flusher: writes every batch each `every`, until the `Batches` is dropped.
fn flush_until_dropped(batches: &Weak<Batches>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(batches) = batches.upgrade() else {
            return;
        };
        batches.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(flush_every: Duration) -> Arc<Batches> {
        Batches::start(flush_every, Out::Memory(Arc::default()))
    }

    fn line(n: usize) -> impl FnOnce(&mut String) {
        move |out: &mut String| {
            out.push_str("line ");
            out.push_str(&n.to_string());
            out.push('\n');
        }
    }

    /// Unbuffered, each line is out as soon as it is appended.
    #[test]
    fn off_writes_each_line_at_once() {
        let batches = memory(Duration::ZERO);
        batches.append(line(1));
        assert_eq!(batches.captured(), "line 1\n");
        batches.append(line(2));
        assert_eq!(batches.captured(), "line 1\nline 2\n");
    }

    /// Buffered, lines wait for the flusher (here an hour away), a full batch or a flush.
    #[test]
    fn lines_wait_for_a_flush() {
        let batches = memory(Duration::from_secs(3600));
        batches.append(line(1));
        batches.append(line(2));
        assert_eq!(batches.captured(), "");
        batches.flush();
        assert_eq!(batches.captured(), "line 1\nline 2\n");
        batches.flush();
        assert_eq!(batches.captured(), "line 1\nline 2\n", "written once");
    }

    /// A batch that reaches `WRITE_AT` is written by its thread without waiting for the flusher.
    #[test]
    fn a_full_batch_is_written_by_its_thread() {
        let batches = memory(Duration::from_secs(3600));
        let long = "x".repeat(999);
        let mut appended = 0;
        while batches.captured().is_empty() {
            batches.append(|out: &mut String| {
                out.push_str(&long);
                out.push('\n');
            });
            appended += 1;
            assert!(appended <= WRITE_AT / 1000 + 1, "never written");
        }
        assert_eq!(batches.captured().len(), appended * 1000);
        assert!(batches.captured().len() >= WRITE_AT);
    }

    /// The flusher writes within its period, with nothing else asking.
    #[test]
    fn the_flusher_writes_within_its_period() {
        let batches = memory(Duration::from_millis(20));
        batches.append(line(7));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while batches.captured().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not flushed in 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(batches.captured(), "line 7\n");
    }

    /// Every thread's lines are written whole, the lines of a thread that ended too, and that
    /// thread's batch is then forgotten.
    #[test]
    fn threads_lines_stay_whole_and_none_are_lost() {
        let batches = memory(Duration::from_secs(3600));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let batches = Arc::clone(&batches);
                std::thread::spawn(move || {
                    for n in 0..500 {
                        batches.append(line(t * 1000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        batches.flush();
        assert!(
            batches.batches.lock().expect("list").is_empty(),
            "ended threads forgotten"
        );
        let mut lines: Vec<String> = batches.captured().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2000);
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 2000, "each line once, whole");
    }

    /// The lines still held when the batches go (the process's exit) are written.
    #[test]
    fn dropping_writes_what_is_left() {
        let captured = Arc::default();
        let batches = Batches::start(
            Duration::from_secs(3600),
            Out::Memory(Arc::clone(&captured)),
        );
        batches.append(line(3));
        drop(batches);
        assert_eq!(*captured.lock().expect("capture"), "line 3\n");
    }
}
