//! Filesystem: JSON lines, one file per subtask, in a directory.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
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

/// Writes JSON lines to `dir/part-NNNN.jsonl`, one file per subtask, replacing
/// a file of the same name. Timestamps are written as RFC 3339 strings.
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
        Ok(Arc::new(move |subtask| {
            fs::create_dir_all(&dir).map_err(|e| OperatorError::io(&dir, e))?;
            let path = dir.join(format!("part-{:04}.jsonl", subtask.index));
            let file = File::create(&path).map_err(|e| OperatorError::io(&path, e))?;
            Ok(Box::new(FileWriter {
                path,
                writer: Some(LineDelimitedWriter::new(BufWriter::with_capacity(
                    1 << 20,
                    file,
                ))),
            }) as Box<dyn Operator>)
        }))
    }
}

struct FileWriter {
    path: PathBuf,
    writer: Option<LineDelimitedWriter<BufWriter<File>>>,
}

#[async_trait]
impl Operator for FileWriter {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let writer = self.writer.as_mut().ok_or("write after the end of input")?;
        writer.write(&without_event_time(&batch))?;
        Ok(())
    }

    async fn on_end_of_input(
        &mut self,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        if let Some(mut writer) = self.writer.take() {
            writer.finish()?;
            let mut file = writer.into_inner();
            file.flush().map_err(|e| OperatorError::io(&self.path, e))?;
            file.get_ref()
                .sync_all()
                .map_err(|e| OperatorError::io(&self.path, e))?;
        }
        Ok(())
    }
}
