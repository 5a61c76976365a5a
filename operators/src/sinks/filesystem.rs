//! Filesystem: JSON lines, in a directory.
//!
//! Without checkpoints, each subtask writes `part-NNNN.jsonl` (replacing a
//! file of that name) and flushes it when the input ends.
//!
//! With checkpoints the sink is exactly-once, by two-phase commit. Rows go to
//! a hidden in-progress file. At a checkpoint barrier the file is closed,
//! synced and renamed to a hidden pending file (pre-commit), and the pending
//! names are part of the checkpoint. When the checkpoint is complete, each
//! pending file is renamed to its final, visible name (commit). A restore
//! commits the pending files of the checkpoint it restores (again, if a crash
//! came between the checkpoint and the rename: committing is idempotent), and
//! removes the in-progress and pending files of the failed run, whose rows
//! will be read again.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::json::LineDelimitedWriter;
use async_trait::async_trait;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::time::without_event_time;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::SinkSpec;
use crate::error::OperatorError;

/// Writes JSON lines to files in `dir`. Timestamps are written as RFC 3339 strings.
#[derive(Debug, Clone)]
pub struct FileSink {
    pub dir: PathBuf,
}

impl FileSink {
    pub fn json(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into() }
    }
}

impl SinkSpec for FileSink {
    fn default_name(&self) -> String {
        "filesystem_sink".into()
    }

    fn factory(&self, _schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        let dir = self.dir.clone();
        Ok(Arc::new(move |_| {
            fs::create_dir_all(&dir).map_err(|e| OperatorError::io(&dir, e))?;
            Ok(Box::new(FileWriter {
                dir: dir.clone(),
                current: None,
                pending: Vec::new(),
                sequence: 0,
                prefix: String::new(),
                transactional: false,
            }) as Box<dyn Operator>)
        }))
    }
}

type JsonWriter = LineDelimitedWriter<BufWriter<File>>;

/// An open output file: where it is written, and its final name.
struct OpenFile {
    path: PathBuf,
    final_name: String,
    writer: JsonWriter,
}

struct FileWriter {
    dir: PathBuf,
    current: Option<OpenFile>,
    /// Pre-committed files: (checkpoint, final name), not yet committed.
    pending: Vec<(u64, String)>,
    sequence: u64,
    /// `part-<subtask>-<run>`: names this run's files.
    prefix: String,
    transactional: bool,
}

fn pending_path(dir: &Path, final_name: &str) -> PathBuf {
    dir.join(format!("_{final_name}.pending"))
}

impl FileWriter {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OperatorError + '_ {
        move |e| OperatorError::io(path, e)
    }

    fn open(&mut self) -> Result<&mut OpenFile, OperatorError> {
        if self.current.is_none() {
            let (path, final_name) = if self.transactional {
                self.sequence += 1;
                let name = format!("{}-{:06}.jsonl", self.prefix, self.sequence);
                (self.dir.join(format!("_{name}.inprogress")), name)
            } else {
                let name = format!("{}.jsonl", self.prefix);
                (self.dir.join(&name), name)
            };
            let file = File::create(&path).map_err(Self::io(&path))?;
            self.current = Some(OpenFile {
                path,
                final_name,
                writer: LineDelimitedWriter::new(BufWriter::with_capacity(1 << 20, file)),
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    /// Closes the open file, synced; returns it (path and final name).
    fn close(&mut self) -> Result<Option<(PathBuf, String)>, OperatorError> {
        let Some(OpenFile {
            path,
            final_name,
            mut writer,
        }) = self.current.take()
        else {
            return Ok(None);
        };
        writer.finish()?;
        let mut file = writer.into_inner();
        file.flush().map_err(Self::io(&path))?;
        file.get_ref().sync_all().map_err(Self::io(&path))?;
        Ok(Some((path, final_name)))
    }

    /// Makes a pending file visible. Idempotent: done already if it is gone
    /// and the final file exists.
    fn commit(&self, final_name: &str) -> Result<(), OperatorError> {
        let pending = pending_path(&self.dir, final_name);
        let target = self.dir.join(final_name);
        match fs::rename(&pending, &target) {
            Ok(()) => Ok(()),
            Err(_) if target.exists() => Ok(()),
            Err(e) => Err(OperatorError::io(&pending, e)),
        }
    }
}

#[async_trait]
impl Operator for FileWriter {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        self.transactional = ctx.checkpointing;
        self.prefix = if self.transactional {
            format!("part-{:04}-{:016x}", ctx.subtask.index, ctx.run_id)
        } else {
            format!("part-{:04}", ctx.subtask.index)
        };
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.open()?.writer.write(&without_event_time(&batch))?;
        Ok(())
    }

    async fn snapshot_state(
        &mut self,
        checkpoint: u64,
        _: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        if let Some((path, final_name)) = self.close()? {
            let pending = pending_path(&self.dir, &final_name);
            fs::rename(&path, &pending).map_err(Self::io(&path))?;
            self.pending.push((checkpoint, final_name));
        }
        Ok(Some(postcard::to_stdvec(&self.pending)?))
    }

    async fn notify_checkpoint_complete(
        &mut self,
        checkpoint: u64,
        _: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        let (done, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= checkpoint);
        for (_, name) in &done {
            self.commit(name)?;
        }
        self.pending = later;
        Ok(())
    }

    async fn restore_state(
        &mut self,
        states: Vec<Vec<u8>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        let mut restored = std::collections::HashSet::new();
        for state in &states {
            let pending: Vec<(u64, String)> = postcard::from_bytes(state)
                .map_err(|e| format!("the sink's stored state does not decode: {e}"))?;
            for (_, name) in pending {
                self.commit(&name)?;
                restored.insert(name);
            }
        }
        // Remove what the failed run left unfinished (its rows come again from
        // the restored positions): each subtask its own files, and subtask 0
        // those of subtasks the job no longer has.
        let entries = fs::read_dir(&self.dir).map_err(Self::io(&self.dir))?;
        let this_run = format!("{:016x}", ctx.run_id);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("_part-") else {
                continue;
            };
            let Some(final_name) = rest
                .strip_suffix(".inprogress")
                .or_else(|| rest.strip_suffix(".pending"))
            else {
                continue;
            };
            let index: Option<usize> = rest.get(..4).and_then(|i| i.parse().ok());
            let ours = index == Some(ctx.subtask.index)
                || (ctx.subtask.index == 0 && index.is_some_and(|i| i >= ctx.subtask.parallelism));
            let listed = restored.contains(&format!("part-{final_name}"));
            if ours && !listed && !name.contains(&this_run) {
                let path = entry.path();
                fs::remove_file(&path).map_err(Self::io(&path))?;
            }
        }
        Ok(())
    }

    async fn on_end_of_input(
        &mut self,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        if let Some((path, final_name)) = self.close()?
            && self.transactional
        {
            // Only reachable when the job ends without a last checkpoint.
            fs::rename(&path, self.dir.join(final_name)).map_err(Self::io(&path))?;
        }
        for (_, name) in std::mem::take(&mut self.pending) {
            self.commit(&name)?;
        }
        Ok(())
    }
}
