//! The filesystem source: JSON lines or CSV, from one file or a directory.
//!
//! Files are cut into byte ranges across the source's subtasks
//! ([`super::file_splits`]), so decoding one large file scales with parallelism.
//! A chunk of lines is decoded at once; rows that fail to decode are handled by
//! the [`DecodeErrorPolicy`], with the file and line of each.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::graph::SourceFactory;
use headwater_runtime::metrics::Counter;
use headwater_runtime::{
    BoxError, EventTimeSpec, OperatorContext, Source, SourcePoll, SubtaskInfo,
};

use super::file_splits::{FileSplit, list_files, splits_for_subtask};
use super::rate_limit::RateLimiter;
use super::split_reader::SplitReader;
use crate::decode_error::{
    BadRecord, DEAD_LETTER_OUTPUT, DECODE_ERRORS_COUNTER, DecodeErrorPolicy, dead_letters_batch,
};
use crate::error::OperatorError;
use crate::formats::{LineDecoder, LineFormat};
use crate::sources::SourceSpec;

/// Reads JSON lines or CSV files.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    pub format: LineFormat,
    pub schema: SchemaRef,
    pub on_decode_error: DecodeErrorPolicy,
    pub event_time: EventTimeSpec,
    pub batch_size: usize,
    /// Rows per second over all subtasks, to replay a file at a pace;
    /// `None` for as fast as possible.
    pub rows_per_second: Option<f64>,
}

impl FileSource {
    /// JSON lines with the given schema; event time is the arrival time until
    /// [`FileSource::with_event_time`] names a column.
    pub fn json(path: impl Into<PathBuf>, schema: SchemaRef) -> Self {
        FileSource::new(path.into(), LineFormat::Json, schema)
    }

    /// CSV with a header line and the given schema.
    pub fn csv(path: impl Into<PathBuf>, schema: SchemaRef) -> Self {
        FileSource::new(path.into(), LineFormat::csv(), schema)
    }

    fn new(path: PathBuf, format: LineFormat, schema: SchemaRef) -> Self {
        FileSource {
            path,
            format,
            schema,
            on_decode_error: DecodeErrorPolicy::Fail,
            event_time: EventTimeSpec::ArrivalTime,
            batch_size: 8192,
            rows_per_second: None,
        }
    }

    pub fn with_event_time(mut self, event_time: EventTimeSpec) -> Self {
        self.event_time = event_time;
        self
    }

    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.on_decode_error = policy;
        self
    }

    /// Replays the files at about this many rows per second (over all
    /// subtasks), in batches of a tenth of a second.
    pub fn with_rows_per_second(mut self, rate: f64) -> Self {
        self.rows_per_second = Some(rate);
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }
}

impl SourceSpec for FileSource {
    fn default_name(&self) -> String {
        "filesystem".into()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn event_time(&self) -> EventTimeSpec {
        self.event_time.clone()
    }

    fn decode_error_policy(&self) -> Option<DecodeErrorPolicy> {
        Some(self.on_decode_error)
    }

    fn factory(&self) -> SourceFactory {
        let spec = self.clone();
        Arc::new(move |subtask: &SubtaskInfo| {
            Ok(Box::new(spec.reader(subtask.index, subtask.parallelism)?) as Box<dyn Source>)
        })
    }
}

impl FileSource {
    /// The reader of subtask `index` of `parallelism`.
    fn reader(&self, index: usize, parallelism: usize) -> Result<FileReader, OperatorError> {
        let files = list_files(&self.path)?;
        let splits = splits_for_subtask(&files, parallelism, index);
        let pace = self
            .rows_per_second
            .map(|r| RateLimiter::new(r / parallelism as f64));
        let batch_size = pace
            .as_ref()
            .map_or(self.batch_size, |p| p.batch_size(self.batch_size));
        let decoder = self.format.decoder(self.schema.clone(), batch_size)?;
        Ok(FileReader {
            spec: self.clone(),
            subtask: (index, parallelism),
            splits: splits.into_iter().map(PlannedSplit::whole).collect(),
            position: None,
            skip: None,
            current: None,
            decoder,
            ready: VecDeque::new(),
            dead_letters: Vec::new(),
            errors: Counter::default(),
            pace,
        })
    }
}

/// A byte range still to read. `resume` (after a restore) is where in it
/// to start: the first byte of a line, and what of the chunk of lines
/// starting there was sent before the checkpoint (rows, and whether its dead
/// letters). Decoding is deterministic, so re-reading that chunk and
/// skipping what was sent resumes exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PlannedSplit {
    path: PathBuf,
    start: u64,
    end: u64,
    /// The file's size when the job started, to notice a changed input.
    file_size: u64,
    resume: Option<Resume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Resume {
    offset: u64,
    /// Where the chunk starting at `offset` ended, once read: a chunk read
    /// again after a restore ends there too, so it holds the same rows.
    end: Option<u64>,
    rows: u64,
    dead_letters_sent: bool,
}

impl PlannedSplit {
    fn whole(split: FileSplit) -> Self {
        let file_size = std::fs::metadata(&split.path).map_or(0, |m| m.len());
        PlannedSplit {
            path: split.path,
            start: split.start,
            end: split.end,
            file_size,
            resume: None,
        }
    }

    fn split(&self) -> FileSplit {
        FileSplit {
            path: self.path.clone(),
            start: self.start,
            end: self.end,
        }
    }
}

/// One subtask's reader: its splits, one after another.
struct FileReader {
    spec: FileSource,
    /// (index, parallelism) of this subtask.
    subtask: (usize, usize),
    /// Splits not yet started.
    splits: VecDeque<PlannedSplit>,
    /// The split being read, and where its current chunk of lines started.
    position: Option<(PlannedSplit, Resume)>,
    /// After a restore: rows (and dead letters) of the first chunk already sent.
    skip: Option<(u64, bool)>,
    current: Option<SplitReader>,
    decoder: Box<dyn LineDecoder>,
    ready: VecDeque<RecordBatch>,
    dead_letters: Vec<BadRecord>,
    errors: Counter,
    pace: Option<RateLimiter>,
}

#[async_trait]
impl Source for FileReader {
    fn schema(&self) -> SchemaRef {
        self.spec.schema.clone()
    }

    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        self.errors = ctx.metrics.counter(DECODE_ERRORS_COUNTER);
        Ok(())
    }

    async fn next(&mut self, _ctx: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        loop {
            if !self.dead_letters.is_empty() {
                let batch = dead_letters_batch(&std::mem::take(&mut self.dead_letters))?;
                if let Some((_, resume)) = &mut self.position {
                    resume.dead_letters_sent = true;
                }
                return Ok(SourcePoll::Side {
                    output: DEAD_LETTER_OUTPUT.into(),
                    batch,
                });
            }
            if let (Some(pace), Some(next)) = (&mut self.pace, self.ready.front()) {
                // Wait before taking the batch out: cancelled here, nothing is lost.
                pace.acquire(next.num_rows()).await;
            }
            if let Some(batch) = self.ready.pop_front() {
                if let Some((_, resume)) = &mut self.position {
                    resume.rows += batch.num_rows() as u64;
                }
                return Ok(SourcePoll::Batch(batch));
            }
            if self.current.is_none() {
                match self.splits.pop_front() {
                    Some(planned) => {
                        let current = match planned.resume {
                            Some(r) => {
                                self.skip = Some((r.rows, r.dead_letters_sent));
                                SplitReader::open_at(planned.split(), r.offset, r.end)?
                            }
                            None => {
                                SplitReader::open(planned.split(), self.spec.format.has_header())?
                            }
                        };
                        self.current = Some(current);
                        self.position = Some((
                            planned,
                            Resume {
                                offset: 0,
                                end: None,
                                rows: 0,
                                dead_letters_sent: false,
                            },
                        ));
                    }
                    None => {
                        self.position = None;
                        return Ok(SourcePoll::Finished);
                    }
                }
            }
            let reader = self.current.as_mut().expect("set above");
            if let Some((_, resume)) = &mut self.position {
                *resume = Resume {
                    offset: reader.buf_offset,
                    end: None,
                    rows: 0,
                    dead_letters_sent: false,
                };
            }
            let mut bad = Vec::new();
            let mut batches = Vec::new();
            let more = reader.read_chunk(|chunk| {
                let mut bad_lines = Vec::new();
                self.decoder
                    .decode(chunk.bytes, &mut batches, &mut bad_lines)?;
                bad.extend(bad_lines.into_iter().map(|b| {
                    (
                        chunk.offset + b.offset as u64,
                        chunk.bytes[b.offset..b.offset + b.len].to_vec(),
                        b.error,
                    )
                }));
                Ok(())
            })?;
            if let Some((_, resume)) = &mut self.position {
                resume.end = Some(reader.buf_offset);
            }
            self.ready.extend(batches);
            if !bad.is_empty() {
                self.handle_bad_lines(bad)?;
            }
            if let Some((rows, dead_letters_sent)) = self.skip.take() {
                self.skip_sent(rows, dead_letters_sent);
            }
            if !more {
                self.current = None;
            }
        }
    }

    async fn snapshot_state(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let mut remaining: Vec<PlannedSplit> = Vec::new();
        if let (Some((planned, resume)), Some(reader)) = (&self.position, &self.current) {
            let resume = if self.ready.is_empty() && self.dead_letters.is_empty() {
                // The chunk is done: resume after it.
                Resume {
                    offset: reader.buf_offset,
                    end: None,
                    rows: 0,
                    dead_letters_sent: false,
                }
            } else {
                *resume
            };
            remaining.push(PlannedSplit {
                resume: Some(resume),
                ..planned.clone()
            });
        } else if let Some((planned, resume)) = &self.position
            && !(self.ready.is_empty() && self.dead_letters.is_empty())
        {
            // The split is read; rows of its last chunk are still to send.
            remaining.push(PlannedSplit {
                resume: Some(*resume),
                ..planned.clone()
            });
        }
        remaining.extend(self.splits.iter().cloned());
        Ok(Some(postcard::to_stdvec(&remaining)?))
    }

    /// Takes this subtask's share of what the old subtasks had still to read:
    /// all of its own at the same parallelism, every `parallelism`-th range
    /// after a change of parallelism (from any number of old subtasks, one included).
    async fn restore_state(&mut self, restored: Restored) -> Result<(), BoxError> {
        let mut remaining: Vec<PlannedSplit> = Vec::new();
        for state in restored.blobs() {
            let splits: Vec<PlannedSplit> = postcard::from_bytes(state)
                .map_err(|e| format!("a stored file position does not decode: {e}"))?;
            remaining.extend(splits);
        }
        for split in &remaining {
            let size = std::fs::metadata(&split.path).map_or(0, |m| m.len());
            if size != split.file_size {
                return Err(format!(
                    "{} changed since the checkpoint ({} bytes then, {size} now)",
                    split.path.display(),
                    split.file_size
                )
                .into());
            }
        }
        if restored.rescaled {
            remaining.sort_by(|a, b| (&a.path, a.start).cmp(&(&b.path, b.start)));
            let (index, parallelism) = self.subtask;
            remaining = remaining
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % parallelism == index)
                .map(|(_, s)| s)
                .collect();
        }
        self.splits = remaining.into();
        self.position = None;
        self.current = None;
        Ok(())
    }
}

impl FileReader {
    /// Drops what was sent before the checkpoint from the first chunk read after a restore.
    fn skip_sent(&mut self, mut rows: u64, dead_letters_sent: bool) {
        if dead_letters_sent {
            self.dead_letters.clear();
        }
        if let Some((_, resume)) = &mut self.position {
            resume.rows = rows;
            resume.dead_letters_sent = dead_letters_sent;
        }
        while rows > 0 {
            let Some(batch) = self.ready.pop_front() else {
                break;
            };
            let n = batch.num_rows() as u64;
            if n <= rows {
                rows -= n;
            } else {
                self.ready
                    .push_front(batch.slice(rows as usize, (n - rows) as usize));
                rows = 0;
            }
        }
    }

    fn handle_bad_lines(&mut self, bad: Vec<(u64, Vec<u8>, String)>) -> Result<(), OperatorError> {
        let reader = self
            .current
            .as_mut()
            .expect("bad lines come from the current split");
        self.errors.add(bad.len() as u64);
        for (offset, raw, error) in bad {
            let record = BadRecord {
                source: reader.split.path.display().to_string(),
                line: Some(reader.lines.line_at(offset)?),
                byte_offset: Some(offset),
                error,
                raw,
                kafka: None,
            };
            match self.spec.on_decode_error {
                DecodeErrorPolicy::Fail => return Err(record.into_error()),
                DecodeErrorPolicy::Skip => {
                    tracing::debug!(
                        "skipped a bad row at {}: {}",
                        record.location(),
                        record.error
                    )
                }
                DecodeErrorPolicy::DeadLetter => self.dead_letters.push(record),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn ids(batch: &RecordBatch) -> impl Iterator<Item = i64> + '_ {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .copied()
    }

    /// A checkpoint late in a chunk whose first line began in the chunk before.
    /// Read again from its start after a restore, the chunk used to end
    /// earlier (its first line was no longer carried over), so it held fewer
    /// rows than were sent from it, and the rows past its end came twice.
    #[tokio::test]
    async fn a_restore_late_in_a_chunk_sends_every_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut written = 0u64;
        let mut rows = 0i64;
        let mut line = |pad: usize, written: &mut u64| {
            let text = format!("{{\"id\":{rows},\"pad\":\"{}\"}}\n", "x".repeat(pad));
            file.write_all(text.as_bytes()).unwrap();
            *written += text.len() as u64;
            rows += 1;
        };
        // Short lines up to just before the first chunk's end, one long line
        // across it, then short lines for two more chunks.
        while written < (4 << 20) - 30_000 {
            line(20, &mut written);
        }
        line(100_000, &mut written);
        while written < 10 << 20 {
            line(20, &mut written);
        }
        drop(line);
        file.flush().unwrap();
        drop(file);
        let total = rows;

        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("pad", DataType::Utf8, false),
        ]));
        let spec = FileSource::json(&path, schema).with_batch_size(100);
        let mut ctx = OperatorContext::standalone(SubtaskInfo::new("rows", 0, 1, 128));
        let mut before = spec.reader(0, 1).unwrap();
        let mut seen = Vec::new();
        loop {
            match before.next(&mut ctx).await.unwrap() {
                SourcePoll::Batch(b) => seen.extend(ids(&b)),
                other => panic!("unexpected {other:?}"),
            }
            let in_second_chunk = before
                .position
                .as_ref()
                .is_some_and(|(_, r)| r.offset > 0 && r.offset < 5 << 20);
            let left: usize = before.ready.iter().map(|b| b.num_rows()).sum();
            if in_second_chunk && (1..=300).contains(&left) {
                break;
            }
        }
        let state = before.snapshot_state().await.unwrap().unwrap();

        let mut after = spec.reader(0, 1).unwrap();
        after
            .restore_state(Restored::from_states(128, 1, vec![state]))
            .await
            .unwrap();
        loop {
            match after.next(&mut ctx).await.unwrap() {
                SourcePoll::Batch(b) => seen.extend(ids(&b)),
                SourcePoll::Finished => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        seen.sort_unstable();
        let sent = seen.len();
        seen.dedup();
        assert_eq!(sent - seen.len(), 0, "rows sent twice");
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
    }
}
