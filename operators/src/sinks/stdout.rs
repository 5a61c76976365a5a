//! Stdout: prints rows as they come, as a table or as JSON lines.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::time::without_event_time;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::SinkSpec;
use crate::error::OperatorError;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdoutFormat {
    /// A table per batch.
    #[default]
    Table,
    /// One JSON object per row.
    Json,
}

/// Prints every batch to standard output. Each batch is written whole, so the
/// output of parallel subtasks does not interleave within a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutSink {
    pub format: StdoutFormat,
}

impl StdoutSink {
    pub fn table() -> Self {
        StdoutSink {
            format: StdoutFormat::Table,
        }
    }

    pub fn json() -> Self {
        StdoutSink {
            format: StdoutFormat::Json,
        }
    }
}

impl SinkSpec for StdoutSink {
    fn default_name(&self) -> String {
        "stdout".into()
    }

    fn factory(&self, _schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        let sink = *self;
        Ok(Arc::new(move |_| Ok(Box::new(sink) as Box<dyn Operator>)))
    }
}

#[async_trait]
impl Operator for StdoutSink {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let batch = without_event_time(&batch);
        let text = match self.format {
            StdoutFormat::Table => format!(
                "{}\n",
                arrow::util::pretty::pretty_format_batches(&[batch])?
            ),
            StdoutFormat::Json => {
                let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
                writer.write(&batch)?;
                writer.finish()?;
                String::from_utf8(writer.into_inner())?
            }
        };
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // A closed pipe (`| head`) ends the output, not the job.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}
