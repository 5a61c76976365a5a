//! Deduplication in the Rust API, on a keyed stream: the first row of each
//! key (redelivered events dropped), or the latest row of each key by event
//! time (a changelog, as SQL's keep-last `ROW_NUMBER() .. DESC = 1`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::lit;
use headwater_operators::changelog::{CHANGE_COLUMN, Change};
use headwater_operators::deduplicate::Deduplicate;
use headwater_operators::normalize::ChangelogNormalize;
use headwater_runtime::Partitioning;

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};

/// Which row of a key [`DataStream::deduplicate`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first row of each key to arrive; later ones are dropped. With a
    /// TTL, a key seen longer ago than that counts as new again.
    First { ttl: Option<Duration> },
    /// The row of each key with the latest event time: a changelog (`_change`
    /// is `+I` for a key's first row, `-U`/`+U` when a row of the same or a
    /// later time replaces it; an older row changes nothing).
    Last,
}

impl DataStream {
    /// Deduplicates this keyed stream (after [`DataStream::key_by`]) by its
    /// key. The seen keys (or each key's latest row) are keyed state, in
    /// every checkpoint, restored at any parallelism.
    pub fn deduplicate(self, keep: Keep) -> Result<DataStream> {
        let Partitioning::Hash(keys) = self.partitioning.clone() else {
            return Err(HeadwaterError::Pipeline(
                "deduplicate() needs a keyed stream: call key_by(..) first".into(),
            ));
        };
        if self.schema.index_of(CHANGE_COLUMN).is_ok() {
            return Err(HeadwaterError::Pipeline(
                "deduplicate() takes an append-only stream, and this one is a changelog".into(),
            ));
        }
        match keep {
            Keep::First { ttl } => {
                let first = Deduplicate::try_new(&keys, &self.schema, ttl)?;
                let schema = self.schema.clone();
                self.then(
                    "deduplicate",
                    schema,
                    Arc::new(move |subtask| first.operator(subtask)),
                )
            }
            Keep::Last => {
                // Every row is an upsert of its key.
                let mut upserts: Vec<Expr> = self
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                    .collect();
                upserts.push(lit(Change::Insert.as_str()).alias(CHANGE_COLUMN));
                let upserts = self.select(upserts)?;
                let last = ChangelogNormalize::keep_last(&keys, &upserts.schema)?;
                let schema = last.output_schema();
                upserts.then(
                    "keep_last",
                    schema,
                    Arc::new(move |subtask| last.operator(subtask)),
                )
            }
        }
    }
}
