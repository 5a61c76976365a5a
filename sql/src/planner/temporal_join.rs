//! Which joins are temporal joins (`JOIN versions FOR SYSTEM_TIME AS OF
//! o.ts`), and what Flink asks of them: an inner or left join on equal keys
//! that hold the versioned table's primary key, of an append-only left
//! input, at the left's event time, against a right input with event time.

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};
use headwater_operators::join::JoinType;

use super::columns::{stream_expr, stream_names};
use super::query::{Planned, QueryPlanner};
use crate::error::SqlError;
use crate::script::TemporalClause;

/// The name a join input goes by: its alias, or its table's name.
fn relation_name(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => Some(a.alias.table().to_string()),
        LogicalPlan::TableScan(t) => Some(t.table_name.table().to_string()),
        _ => None,
    }
}

impl<'a> QueryPlanner<'a> {
    /// The `FOR SYSTEM_TIME AS OF` clause of `j`'s right input, if it has one.
    pub(super) fn temporal_clause(
        &mut self,
        j: &Join,
    ) -> Result<Option<&'a TemporalClause>, SqlError> {
        let clauses = self.temporal;
        let find = |plan: &LogicalPlan| {
            let name = relation_name(plan)?;
            clauses.iter().position(|c| c.name() == name).or_else(|| {
                clauses
                    .iter()
                    .position(|c| c.name().eq_ignore_ascii_case(&name))
            })
        };
        if let Some(clause) = find(&j.left).map(|i| &clauses[i]) {
            return Err(SqlError::unsupported(
                clause.at,
                format!(
                    "`{}` FOR SYSTEM_TIME AS OF is the left input of its join; the versioned \
                     table is the right input (`FROM orders o JOIN rates FOR SYSTEM_TIME AS OF \
                     o.ts AS r ON ..`)",
                    clause.name()
                ),
            ));
        }
        Ok(find(&j.right).map(|i| {
            self.temporal_used[i] = true;
            &clauses[i]
        }))
    }

    /// Refuses a `FOR SYSTEM_TIME AS OF` clause that no join took: one after
    /// a table that is not the right input of a join (which Flink refuses
    /// too), rather than reading the table as if the clause were not there.
    pub(super) fn check_temporal_clauses_used(&self) -> Result<(), SqlError> {
        match self.temporal_used.iter().position(|used| !used) {
            None => Ok(()),
            Some(i) => {
                let clause = &self.temporal[i];
                Err(SqlError::unsupported(
                    clause.at,
                    format!(
                        "`{}` FOR SYSTEM_TIME AS OF: a versioned table is read as of a time \
                         only as the right input of a join (`FROM orders o JOIN {} FOR \
                         SYSTEM_TIME AS OF o.ts ON ..`)",
                        clause.table, clause.table
                    ),
                ))
            }
        }
    }

    /// Refuses a temporal join Flink would refuse, with the reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_temporal(
        &self,
        clause: &TemporalClause,
        join_type: JoinType,
        left: &Planned,
        right: &Planned,
        left_schema: &DFSchema,
        right_keys: &[Expr],
        right_schema: &DFSchema,
    ) -> Result<(), SqlError> {
        let refuse = |message: String| Err(SqlError::unsupported(clause.at, message));
        let name = clause.name();
        if !matches!(join_type, JoinType::Inner | JoinType::Left) {
            return refuse(format!(
                "the temporal join of `{name}` is an inner or a LEFT join, as in Flink"
            ));
        }
        if left.updating {
            return refuse(format!(
                "the temporal join of `{name}`: its left input is an updating query (an \
                 aggregate, keep-last deduplication or an upsert-kafka table); a temporal join \
                 looks up versions for append-only rows"
            ));
        }
        // The time is the left input's event time.
        let column = clause.time.last().cloned().unwrap_or_default();
        let qualifier = (clause.time.len() > 1).then(|| clause.time[clause.time.len() - 2].clone());
        let names = stream_names(left_schema);
        let index = left_schema.iter().position(|(q, f)| {
            f.name() == &column
                && qualifier
                    .as_ref()
                    .is_none_or(|want| q.is_some_and(|q| q.table() == want))
        });
        let time_name = index.map(|i| names[i].as_str());
        if time_name.is_none() || time_name != left.time.as_deref() {
            let time = clause.time.join(".");
            return refuse(match &left.time {
                Some(_) => format!(
                    "FOR SYSTEM_TIME AS OF {time}: a temporal join runs at the event time of \
                     its left input (the column its WATERMARK is on, selected as it is); \
                     processing-time temporal joins are not supported"
                ),
                None => format!(
                    "FOR SYSTEM_TIME AS OF {time}: the left input of the temporal join has no \
                     event time; declare a WATERMARK on its table"
                ),
            });
        }
        if right.time.is_none() {
            return refuse(format!(
                "`{name}` is not a versioned table: it has no event time; declare a WATERMARK \
                 on its table (a versioned table has a primary key and an event time)"
            ));
        }
        if right_keys.is_empty() {
            return refuse(format!(
                "the temporal join of `{name}` needs an equality condition on its key \
                 (ON o.currency = {name}.currency)"
            ));
        }
        // An updating versioned table changes rows by its primary key: the
        // join's keys must hold it, so each key has one version at a time.
        if let Some(primary_key) = &right.key {
            let joined: Vec<String> = right_keys
                .iter()
                .filter_map(|e| match stream_expr(e, right_schema) {
                    Expr::Column(c) => Some(c.name),
                    _ => None,
                })
                .collect();
            if let Some(missing) = primary_key.iter().find(|k| !joined.contains(k)) {
                return refuse(format!(
                    "the temporal join of `{name}` must join on its primary key ({}); `{missing}` \
                     is not in the condition",
                    primary_key.join(", ")
                ));
            }
        }
        Ok(())
    }
}
