//! Following one log file, as `tail -F` does, by polling: each poll stats the path and reads
//! the bytes added since the last one, bounded per poll. A file there at the start is followed
//! from its end (its past is no failure's evidence); a file that appears later, or replaces the
//! one followed (rotation: another inode at the path), is read from its start, after the rest
//! of the old one; a file that shrank (truncation, `copytruncate`) is read again from 0.
//!
//! Polling rather than inotify: portable, no descriptor per watch, and a file on a filesystem
//! without notifications (NFS, some container mounts) is followed the same way. A poll is one
//! `stat` and, when the file grew, one bounded read, on the evidence thread, never a request's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most a poll reads from one file: a log that grows faster is read over several polls (and
/// what a failure's window misses is only evidence lost, never memory).
pub const MAX_READ_PER_POLL: usize = 256 * 1024;

/// The longest line kept, in bytes; a longer one is cut there and its rest skipped.
pub const MAX_LINE: usize = 1024;

/// One followed file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    /// The file followed, its identity (device, inode) and the offset read up to.
    open: Option<Open>,
    /// The start of a line whose end has not been written yet (at most [`MAX_LINE`]).
    partial: Vec<u8>,
    /// The current line is longer than [`MAX_LINE`]: its part kept was emitted, the rest is
    /// skipped up to its end.
    skipping: bool,
}

#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
}

impl Follower {
    /// Follows `path` from its current end (or, if it does not exist yet, from the start of the
    /// file that appears there).
    pub fn new(path: PathBuf) -> Follower {
        let open = open(&path).map(|(file, id, size)| Open {
            file,
            id,
            offset: size,
        });
        Follower {
            path,
            open,
            partial: Vec::new(),
            skipping: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was written since the last poll, handing each complete line (raw bytes,
    /// without its newline) to `line`.
    pub fn poll(&mut self, line: &mut impl FnMut(&[u8])) {
        let now = std::fs::metadata(&self.path).ok();
        let replaced = match (&self.open, &now) {
            (Some(open), Some(meta)) => open.id != (meta.dev(), meta.ino()),
            (None, Some(_)) => true,
            (Some(_), None) | (None, None) => false,
        };
        if replaced {
            // Rotated: the rest of the old file first (the app may have written its last lines
            // there), then the new one from its start.
            if self.open.is_some() {
                self.read_new(line);
                self.end_line(line);
            }
            self.open = open(&self.path).map(|(file, id, _)| Open {
                file,
                id,
                offset: 0,
            });
        } else if let (Some(open), Some(meta)) = (&mut self.open, &now) {
            if meta.len() < open.offset {
                // Truncated in place: what is there now was written since.
                open.offset = 0;
                self.partial.clear();
                self.skipping = false;
            }
        }
        self.read_new(line);
    }

    /// Reads from the offset to the end, at most [`MAX_READ_PER_POLL`].
    fn read_new(&mut self, line: &mut impl FnMut(&[u8])) {
        let Some(open) = &mut self.open else {
            return;
        };
        if open.file.seek(SeekFrom::Start(open.offset)).is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(8192);
        let read = (&mut open.file)
            .take(MAX_READ_PER_POLL as u64)
            .read_to_end(&mut buf);
        let Ok(read) = read else {
            return;
        };
        open.offset += read as u64;
        let mut rest = &buf[..];
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.push(&rest[..newline], line);
            self.end_line(line);
            rest = &rest[newline + 1..];
        }
        self.push(rest, line);
    }

    /// Adds bytes to the current line, emitting it cut at [`MAX_LINE`] once it is longer.
    fn push(&mut self, bytes: &[u8], line: &mut impl FnMut(&[u8])) {
        if self.skipping {
            return;
        }
        let room = MAX_LINE - self.partial.len();
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            line(&self.partial);
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The current line ended (a newline, or the end of a rotated file).
    fn end_line(&mut self, line: &mut impl FnMut(&[u8])) {
        if !self.skipping && !self.partial.is_empty() {
            line(&self.partial);
        }
        self.partial.clear();
        self.skipping = false;
    }
}

/// The file at `path`, its identity and its size, if it is a regular file that can be opened.
fn open(path: &Path) -> Option<(File, (u64, u64), u64)> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some((file, (meta.dev(), meta.ino()), meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(follower: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        follower.poll(&mut |l: &[u8]| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("triage-follow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// A file there at the start is followed from its end; lines come whole, a line without
    /// its newline yet only once it ends.
    #[test]
    fn follows_from_the_end_and_waits_for_whole_lines() {
        let dir = scratch("end");
        let path = dir.join("app.log");
        append(&path, "old line\n");
        let mut f = Follower::new(path.clone());
        assert!(lines(&mut f).is_empty());
        append(&path, "one\ntwo\nhal");
        assert_eq!(lines(&mut f), ["one", "two"]);
        append(&path, "f\n");
        assert_eq!(lines(&mut f), ["half"]);
    }

    /// Rotation (the file renamed away, a new one made at the path): the old file's last lines,
    /// then the new file from its start. A file that appears later is read from its start.
    #[test]
    fn rotation_and_late_files() {
        let dir = scratch("rotate");
        let path = dir.join("app.log");
        let mut f = Follower::new(path.clone());
        assert!(lines(&mut f).is_empty(), "no file yet");
        append(&path, "first\n");
        assert_eq!(
            lines(&mut f),
            ["first"],
            "a new file is read from its start"
        );
        append(&path, "before rotation\nlast words");
        std::fs::rename(&path, dir.join("app.log.1")).expect("rotate");
        append(&dir.join("app.log.1"), " of the old file\n");
        append(&path, "in the new file\n");
        assert_eq!(
            lines(&mut f),
            [
                "before rotation",
                "last words of the old file",
                "in the new file"
            ]
        );
        // Removed and not yet back: nothing, and no error; back: from its start.
        std::fs::remove_file(&path).expect("remove");
        assert!(lines(&mut f).is_empty());
        append(&path, "back\n");
        assert_eq!(lines(&mut f), ["back"]);
    }

    /// Truncation in place (`copytruncate`, `> app.log`): what is written after is read from 0.
    #[test]
    fn truncation_reads_from_the_start() {
        let dir = scratch("truncate");
        let path = dir.join("app.log");
        append(&path, "");
        let mut f = Follower::new(path.clone());
        append(&path, "a fairly long line before the truncation\n");
        assert_eq!(lines(&mut f).len(), 1);
        std::fs::write(&path, "short\n").expect("truncate and write");
        assert_eq!(lines(&mut f), ["short"]);
    }

    /// A line longer than the bound is cut there and its rest skipped; a poll reads at most
    /// its bound, and the next poll carries on.
    #[test]
    fn bounded_lines_and_reads() {
        let dir = scratch("bounds");
        let path = dir.join("app.log");
        append(&path, "");
        let mut f = Follower::new(path.clone());
        append(&path, &format!("{}\nnext\n", "x".repeat(MAX_LINE * 3)));
        let got = lines(&mut f);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1], "next");
        let line = format!("{}\n", "y".repeat(99));
        let many = MAX_READ_PER_POLL / line.len() + 10;
        append(&path, &line.repeat(many));
        let first = lines(&mut f).len();
        assert!(first < many, "{first} of {many} in one poll");
        assert_eq!(first + lines(&mut f).len(), many);
    }
}
