//! `[reports] export`: every failure report also written as one JSON line (the
//! `/diagnoses/{id}?format=json` object) to stdout or a file, so a fleet's reports land in the
//! log store the cluster already runs (Loki, Elasticsearch, via Vector or Fluent Bit), and an
//! id from any instance can be looked up in one place.
//!
//! The request path only hands the stored report (an `Arc`) to a bounded queue; a thread of
//! its own serializes and writes. When the writer falls behind (a blocked stdout, a slow disk)
//! the queue fills and further reports are dropped, counted in
//! `triage_reports_export_dropped_total`, rather than slowing requests down or growing memory.

use crate::config::ReportExport;
use crate::report::Report;
use prometheus::IntCounter;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reports waiting to be written, at most: a burst of failures beyond this is dropped.
const QUEUE: usize = 4096;
/// How often a file is checked for having been rotated away (renamed or removed), and
/// reopened under its name.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

/// The request path's end of the export.
pub struct Exporter {
    queue: SyncSender<Arc<Report>>,
    dropped: IntCounter,
}

impl Exporter {
    /// Opens the target (a file is created if missing, and appended to) and starts the writer
    /// thread. An unopenable file is an error at start, like any other config error.
    pub fn start(target: &ReportExport, dropped: IntCounter) -> Result<Exporter, String> {
        let mut sink = Sink::open(target)?;
        let (queue, reports) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("report-export".into())
            .spawn(move || sink.run(reports))
            .map_err(|e| format!("cannot start the report export thread: {e}"))?;
        Ok(Exporter { queue, dropped })
    }

    /// Queues a report for writing, or counts it dropped when the queue is full. Never blocks.
    pub fn send(&self, report: Arc<Report>) {
        match self.queue.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// Where the lines go.
enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        checked: Instant,
    },
}

impl Sink {
    fn open(target: &ReportExport) -> Result<Sink, String> {
        match target {
            ReportExport::Stdout => Ok(Sink::Stdout),
            ReportExport::File(path) => Ok(Sink::File {
                file: open_append(path)?,
                path: path.clone(),
                checked: Instant::now(),
            }),
        }
    }

    fn run(&mut self, reports: Receiver<Arc<Report>>) {
        loop {
            match reports.recv_timeout(REOPEN_CHECK) {
                Ok(report) => {
                    let mut line = crate::admin::report_json(&report).into_bytes();
                    line.push(b'\n');
                    self.write(&line);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.reopen_if_rotated();
        }
    }

    /// One line in one write, so lines from other writers of the same stdout (the access
    /// log) never land inside it. A failed write loses the line: the export is best effort,
    /// the ring keeps the report either way.
    fn write(&mut self, line: &[u8]) {
        let _ = match self {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File { file, .. } => file.write_all(line),
        };
    }

    /// After logrotate renames the file (or someone removes it), lines would go on into the
    /// old inode for ever: when the path no longer names the open file, open it afresh.
    fn reopen_if_rotated(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let Sink::File {
            path,
            file,
            checked,
        } = self
        else {
            return;
        };
        if checked.elapsed() < REOPEN_CHECK {
            return;
        }
        *checked = Instant::now();
        let same = match (std::fs::metadata(&*path), file.metadata()) {
            (Ok(named), Ok(open)) => named.ino() == open.ino() && named.dev() == open.dev(),
            _ => false,
        };
        if !same {
            if let Ok(reopened) = open_append(path) {
                *file = reopened;
            }
        }
    }
}

fn open_append(path: &std::path::Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("[reports] export: cannot open {}: {e}", path.display()))
}
