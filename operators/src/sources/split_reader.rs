//! Reading the lines of one split of a file, a chunk at a time, and finding
//! the line number of a byte offset when a bad row needs one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::file_splits::FileSplit;
use crate::error::OperatorError;

const CHUNK_BYTES: usize = 4 << 20;

/// A chunk of whole lines and the file offset of its first byte.
pub(super) struct Chunk<'a> {
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// Reads the lines that start in one split.
pub(super) struct SplitReader {
    pub split: FileSplit,
    file: File,
    /// File offset of `buf[0]`.
    pub buf_offset: u64,
    buf: Vec<u8>,
    eof: bool,
    done: bool,
    /// Where the next chunk must end: set after a restore, so the chunk read
    /// again is the very chunk read before, and skipping its rows sent
    /// before the checkpoint resumes exactly.
    chunk_end: Option<u64>,
    pub lines: LineCounter,
}

impl SplitReader {
    pub fn open(split: FileSplit, skip_header: bool) -> Result<Self, OperatorError> {
        let path = split.path.clone();
        let io = |e| OperatorError::io(&path, e);
        let mut file = File::open(&split.path).map_err(io)?;
        // The first line of the split: the one that starts at or after `start`.
        let mut first = 0;
        if split.start > 0 || skip_header {
            // Skip to just after the first newline at or after `start - 1`.
            let from = split.start.saturating_sub(1);
            file.seek(SeekFrom::Start(from)).map_err(io)?;
            let mut block = vec![0u8; 64 << 10];
            let mut scanned = 0u64;
            first = loop {
                let n = file.read(&mut block).map_err(io)?;
                if n == 0 {
                    break from + scanned; // no newline: no line starts in this split
                }
                if let Some(i) = memchr::memchr(b'\n', &block[..n]) {
                    break from + scanned + i as u64 + 1;
                }
                scanned += n as u64;
            };
        }
        let lines = LineCounter::new(split.path.clone());
        Ok(SplitReader {
            done: first >= split.end,
            file,
            buf_offset: first,
            buf: Vec::new(),
            eof: false,
            chunk_end: None,
            split,
            lines,
        })
    }

    /// Opens `split` at `offset`, the start of a line within it (a restored
    /// position). The first chunk ends at `chunk_end` if given: the end of
    /// the chunk that started at `offset` before.
    pub fn open_at(
        split: FileSplit,
        offset: u64,
        chunk_end: Option<u64>,
    ) -> Result<Self, OperatorError> {
        let file = File::open(&split.path).map_err(|e| OperatorError::io(&split.path, e))?;
        let lines = LineCounter::new(split.path.clone());
        Ok(SplitReader {
            done: offset >= split.end,
            file,
            buf_offset: offset,
            buf: Vec::new(),
            eof: false,
            chunk_end: chunk_end.filter(|&end| end > offset),
            split,
            lines,
        })
    }

    /// Reads the next chunk of whole lines and passes it to `decode`. Returns
    /// whether the split has more.
    pub fn read_chunk(
        &mut self,
        decode: impl FnOnce(Chunk<'_>) -> Result<(), OperatorError>,
    ) -> Result<bool, OperatorError> {
        if self.done || self.buf_offset >= self.split.end {
            self.done = true;
            return Ok(false);
        }
        let path = self.split.path.clone();
        let io = |e| OperatorError::io(&path, e);
        let chunk_end = self.chunk_end.take();
        if !self.eof {
            let have = self.buf.len();
            // Read up to the split's end, and a little beyond to finish the last line.
            let to_end = self.split.end.saturating_sub(self.buf_offset + have as u64) as usize;
            let mut want = CHUNK_BYTES.min(to_end + (64 << 10));
            if let Some(end) = chunk_end {
                let needed = (end - self.buf_offset) as usize;
                want = want.max(needed.saturating_sub(have));
            }
            self.buf.resize(have + want, 0);
            self.file
                .seek(SeekFrom::Start(self.buf_offset + have as u64))
                .map_err(io)?;
            let mut filled = have;
            while filled < self.buf.len() {
                let n = self.file.read(&mut self.buf[filled..]).map_err(io)?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                filled += n;
            }
            self.buf.truncate(filled);
        }
        // Our last line is the one holding byte `end - 1`; it ends at the next newline.
        let rel_end = self.split.end.saturating_sub(self.buf_offset) as usize;
        let search_from = rel_end.saturating_sub(1).min(self.buf.len());
        let cut = if rel_end <= self.buf.len() {
            memchr::memchr(b'\n', &self.buf[search_from..]).map(|i| (search_from + i + 1, true))
        } else {
            None
        };
        let exact = chunk_end
            .map(|end| (end - self.buf_offset) as usize)
            .filter(|&n| n <= self.buf.len() && (n == self.buf.len() || self.buf[n - 1] == b'\n'));
        let (take, last) = match (exact, cut) {
            (Some(n), _) => (n, false),
            (None, Some(cut)) => cut,
            (None, None) if self.eof => (self.buf.len(), true),
            (None, None) => match memchr::memrchr(b'\n', &self.buf) {
                Some(i) => (i + 1, false),
                None => (0, false), // one line longer than the chunk: read more
            },
        };
        if take > 0 {
            decode(Chunk {
                offset: self.buf_offset,
                bytes: &self.buf[..take],
            })?;
        }
        self.buf.drain(..take);
        self.buf_offset += take as u64;
        if last {
            self.done = true;
        }
        Ok(!self.done)
    }
}

/// Finds line numbers of byte offsets, only when asked: counting is paid for by
/// bad rows, not by every row.
pub(super) struct LineCounter {
    path: PathBuf,
    /// A known point: the line that starts at this offset.
    offset: u64,
    line: u64,
}

impl LineCounter {
    fn new(path: PathBuf) -> Self {
        LineCounter {
            path,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based number of the line starting at `offset`.
    pub fn line_at(&mut self, offset: u64) -> Result<u64, OperatorError> {
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += count_newlines(&self.path, self.offset, offset)?;
        self.offset = offset;
        Ok(self.line)
    }
}

fn count_newlines(path: &Path, from: u64, to: u64) -> Result<u64, OperatorError> {
    let io = |e| OperatorError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut remaining = to - from;
    let mut buf = vec![0u8; (remaining as usize).min(1 << 20)];
    let mut count = 0;
    while remaining > 0 {
        let want = (remaining as usize).min(buf.len());
        let n = file.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            break;
        }
        count += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        remaining -= n as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(path: &Path, split: FileSplit, header: bool) -> Vec<String> {
        let _ = path;
        let mut reader = SplitReader::open(split, header).unwrap();
        let mut lines = Vec::new();
        loop {
            let more = reader
                .read_chunk(|c| {
                    lines.extend(
                        String::from_utf8(c.bytes.to_vec())
                            .unwrap()
                            .lines()
                            .map(String::from),
                    );
                    Ok(())
                })
                .unwrap();
            if !more {
                break;
            }
        }
        lines
    }

    #[test]
    fn every_line_is_read_by_exactly_one_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let mut f = File::create(&path).unwrap();
        let expected: Vec<String> = (0..500)
            .map(|i| format!("line-{i}-{}", "x".repeat(i % 13)))
            .collect();
        for l in &expected {
            writeln!(f, "{l}").unwrap();
        }
        drop(f);
        let len = std::fs::metadata(&path).unwrap().len();
        for pieces in [1u64, 2, 3, 7, 64, 997] {
            let mut got = Vec::new();
            for k in 0..pieces {
                let split = FileSplit {
                    path: path.clone(),
                    start: len * k / pieces,
                    end: len * (k + 1) / pieces,
                };
                got.extend(read_all(&path, split, false));
            }
            assert_eq!(got, expected, "{pieces} pieces");
        }
        // With a header, the first line is skipped once.
        let got: Vec<String> = (0..3u64)
            .flat_map(|k| {
                read_all(
                    &path,
                    FileSplit {
                        path: path.clone(),
                        start: len * k / 3,
                        end: len * (k + 1) / 3,
                    },
                    true,
                )
            })
            .collect();
        assert_eq!(got, expected[1..]);
    }

    #[test]
    fn line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "a\nbb\nccc\n").unwrap();
        let mut c = LineCounter::new(path);
        assert_eq!(c.line_at(5).unwrap(), 3);
        assert_eq!(c.line_at(5).unwrap(), 3);
        assert_eq!(c.line_at(2).unwrap(), 2);
    }
}
