//! The streaming reader: blocks cut at sample boundaries (blank lines), handed to
//! worker threads, their partial folds merged; a cut-short zstd stream read up to
//! its break.

use std::io::{self, Read};
use std::sync::{mpsc, Mutex};

use memchr::memmem;

use super::partial::{merge, Partial};
use super::{FoldOptions, Profile, REPEAT_MARKER};

/// Ends a zstd stream at its first broken frame instead of failing: a kdelta killed
/// while it appended a repeat leaves a cut-short last frame; the repeats before it
/// are whole and worth analysing. The error is kept for a warning.
pub(super) struct CutShort<'a, R> {
    pub inner: R,
    pub cut: &'a std::cell::Cell<Option<String>>,
}

impl<R: Read> Read for CutShort<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                // Reads after this one also end: the fold stops at the first 0.
                self.cut.set(Some(e.to_string()));
                Ok(0)
            }
            other => other,
        }
    }
}

/// A block of whole samples, with the repeat in force where it starts and the number
/// of its first line.
pub(super) struct Block {
    pub data: Vec<u8>,
    pub repeat: u32,
    pub first_line: u64,
}

/// Folds `perf script` text from any reader.
pub fn fold_reader(mut input: impl Read, label: &str, opts: &FoldOptions) -> io::Result<Profile> {
    let threads = opts.threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<Block>(threads * 2);
    let rx = Mutex::new(rx);
    let marker = memmem::Finder::new(b"\n# kdelta-repeat: ");

    let mut total_bytes = 0u64;
    let mut max_repeat = 0u32;
    let partials: Vec<Partial> = std::thread::scope(|scope| -> io::Result<Vec<Partial>> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let rx = &rx;
                scope.spawn(move || {
                    let mut p = Partial::default();
                    loop {
                        let block = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => break,
                        };
                        let Ok(block) = block else { break };
                        p.fold_block(&block, opts.max_warnings);
                    }
                    p
                })
            })
            .collect();

        // The reader loop: cut blocks at the last blank line, carry the rest over.
        let mut carry: Vec<u8> = Vec::new();
        let mut repeat = 1u32;
        let mut line_no = 1u64;
        let mut eof = false;
        let mut read_err = None;
        while !eof {
            let mut buf = std::mem::take(&mut carry);
            let start = buf.len();
            buf.resize(start + opts.block_size, 0);
            let mut filled = start;
            while filled < buf.len() {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_err = Some(e);
                        eof = true;
                        break;
                    }
                }
            }
            buf.truncate(filled);
            total_bytes += (filled - start) as u64;
            let cut = if eof {
                buf.len()
            } else {
                match memmem::rfind(&buf, b"\n\n") {
                    Some(i) => i + 2,
                    // One sample bigger than a block: keep reading into it.
                    None => {
                        carry = buf;
                        continue;
                    }
                }
            };
            carry = buf.split_off(cut);
            let block_repeat = repeat;
            // Find repeat markers so the next block knows which repeat it starts in.
            if buf.starts_with(REPEAT_MARKER.as_bytes()) {
                repeat = parse_marker(&buf).unwrap_or(repeat);
            }
            for pos in marker.find_iter(&buf) {
                repeat = parse_marker(&buf[pos + 1..]).unwrap_or(repeat);
            }
            max_repeat = max_repeat.max(repeat);
            let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
            let block = Block {
                data: buf,
                repeat: block_repeat,
                first_line: line_no,
            };
            line_no += lines;
            if tx.send(block).is_err() {
                break;
            }
        }
        drop(tx);
        let parts = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        match read_err {
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!("{label}: read failed after {total_bytes} bytes: {e}"),
            )),
            None => Ok(parts),
        }
    })?;

    let mut profile = merge(partials, opts.max_warnings);
    profile.bytes = total_bytes;
    profile.repeats = profile.repeats.max(max_repeat).max(1);
    for w in &mut profile.warnings {
        *w = format!("{label}:{w}");
    }
    Ok(profile)
}

pub(super) fn parse_marker(line_start: &[u8]) -> Option<u32> {
    let rest = line_start.strip_prefix(REPEAT_MARKER.as_bytes())?;
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}
