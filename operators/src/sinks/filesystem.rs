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
//! will be read again. A final name ends with the checkpoint that committed
//! it (`-c0000000012.jsonl`), so a restore from an older checkpoint (the newest
//! was damaged) also removes what the newer ones committed.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::json::LineDelimitedWriter;
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
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

/// `part-<subtask>-<run>-<sequence>.jsonl` committed by `checkpoint`:
/// `part-<subtask>-<run>-<sequence>-c<checkpoint>.jsonl`.
fn committed_name(final_name: &str, checkpoint: u64) -> String {
    let stem = final_name.strip_suffix(".jsonl").unwrap_or(final_name);
    format!("{stem}-c{checkpoint:010}.jsonl")
}

/// The checkpoint that committed a file, from its name.
fn checkpoint_of(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".jsonl")?;
    stem.rsplit_once("-c")?.1.parse().ok()
}

/// A file of this sink, from its name: whether it is unfinished (in progress
/// or pending), and its final name after `part-`.
fn output_file(name: &str) -> Option<(bool, &str)> {
    if let Some(rest) = name.strip_prefix("_part-") {
        let final_name = rest
            .strip_suffix(".inprogress")
            .or_else(|| rest.strip_suffix(".pending"))?;
        return Some((true, final_name));
    }
    Some((false, name.strip_prefix("part-")?))
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
            // The final name says which checkpoint commits the file, so that a
            // restore from an earlier one can take it back.
            let final_name = committed_name(&final_name, checkpoint);
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
        restored: Restored,
        ctx: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        let mut restored_names = std::collections::HashSet::new();
        for state in restored.blobs() {
            let pending: Vec<(u64, String)> = postcard::from_bytes(state)
                .map_err(|e| format!("the sink's stored state does not decode: {e}"))?;
            for (_, name) in pending {
                self.commit(&name)?;
                restored_names.insert(name);
            }
        }
        // Remove what the failed run left unfinished, and what checkpoints
        // after the restored one committed (a restore from an older checkpoint,
        // when the newest was damaged): their rows come again from the
        // restored positions. Each subtask its own files, and subtask 0 those
        // of subtasks the job no longer has.
        let entries = fs::read_dir(&self.dir).map_err(Self::io(&self.dir))?;
        let this_run = format!("{:016x}", ctx.run_id);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((unfinished, rest)) = output_file(&name) else {
                continue;
            };
            let index: Option<usize> = rest.get(..4).and_then(|i| i.parse().ok());
            let ours = index == Some(ctx.subtask.index)
                || (ctx.subtask.index == 0 && index.is_some_and(|i| i >= ctx.subtask.parallelism));
            if !ours || name.contains(&this_run) {
                continue;
            }
            let remove = if unfinished {
                !restored_names.contains(&format!("part-{rest}"))
            } else {
                checkpoint_of(&name).is_some_and(|c| c > restored.checkpoint)
            };
            if remove {
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
        // Without checkpoints the file has its final name already. With them,
        // rows after the job's last checkpoint are in no checkpoint:
        // committing them would write them twice after a restore from it.
        if let Some((path, _)) = self.close()?
            && self.transactional
        {
            tracing::warn!(
                file = %path.display(),
                "rows arrived after the job's last checkpoint; they are not committed"
            );
            fs::remove_file(&path).map_err(Self::io(&path))?;
        }
        for (_, name) in std::mem::take(&mut self.pending) {
            self.commit(&name)?;
        }
        Ok(())
    }
}
