//! `headwater serve`: what clients declare. `CREATE TABLE` adds a table
//! (checked, not run); `CREATE MATERIALIZED VIEW v AS ..` starts a job that
//! keeps `v`; `INSERT INTO t SELECT ..` starts a job that writes to `t`;
//! `DROP MATERIALIZED VIEW`, `STOP JOB` and `DROP TABLE` undo them.
//!
//! With a data directory the catalog survives the server: the statements
//! that hold are kept in `catalog.json` (rewritten whole, then renamed) with
//! each job's name and instance number, and each job instance checkpoints to
//! `jobs/<instance>/`. A server started over the directory runs the
//! statements again under the same names, and each job resumes from its own
//! newest checkpoint. A dropped job's instance is never reused, so a job
//! created again under the same name starts afresh in a directory of its
//! own, and what the old one still writes reaches no one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::sql::sqlparser::tokenizer::Token;
use headwater_operators::view::ViewRegistry;
use headwater_runtime::checkpoint::CheckpointConfig;
use headwater_runtime::{JobConfig, JobError};
use headwater_sql::script::read_script;
use headwater_sql::{SqlError, SqlOptions, plan_script};

use super::engine::{Outcome, StatementError, lead};
use super::jobs::{JobSpec, JobState, Jobs};
use super::sandbox::{Sandbox, check_name};

/// How the server's jobs run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Kept statements and job checkpoints go here.
    pub data_dir: PathBuf,
    pub parallelism: usize,
    pub checkpoint_interval: Duration,
    /// Parallelism, restarts and state settings for every job.
    pub job: JobConfig,
    /// The directories clients' statements may name files under.
    pub sandbox: Sandbox,
}

/// A statement kept in the catalog: a table, or a running job's statement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    /// The table's or the job's name.
    name: String,
    sql: String,
    is_table: bool,
    /// A job's instance: its directory is `jobs/<instance>`, and it is known
    /// to the server's registries as `<name>#<instance>`.
    #[serde(default)]
    instance: u64,
}

impl Kept {
    /// The job instance's key in the registries, and its runtime name.
    fn job(&self) -> String {
        job_key(&self.name, self.instance)
    }
}

fn job_key(name: &str, instance: u64) -> String {
    format!("{name}#{instance}")
}

/// What `catalog.json` holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CatalogFile {
    /// The instance number of the next job (never reused).
    next_instance: u64,
    statements: Vec<Kept>,
}

/// Tables and jobs declared by clients.
pub struct Catalog {
    config: ServeConfig,
    views: ViewRegistry,
    jobs: Arc<Jobs>,
    /// Statements that hold, in the order they came; one change at a time.
    kept: tokio::sync::Mutex<Vec<Kept>>,
    /// The instance number of the next job.
    next_instance: std::sync::atomic::AtomicU64,
    /// Kept statements that failed to run again at start: still saved, so
    /// that a server started once their cause is fixed runs them, until a
    /// client drops them.
    failed: std::sync::Mutex<Vec<Kept>>,
}

impl Catalog {
    pub fn new(config: ServeConfig, views: ViewRegistry, jobs: Arc<Jobs>) -> Self {
        Catalog {
            config,
            views,
            jobs,
            kept: Default::default(),
            next_instance: std::sync::atomic::AtomicU64::new(1),
            failed: Default::default(),
        }
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a failed statement named `name`; whether there was one.
    fn drop_failed(&self, name: &str, is_table: bool) -> bool {
        let mut failed = self.failed();
        let before = failed.len();
        failed.retain(|k| !(k.name == name && k.is_table == is_table));
        failed.len() < before
    }

    fn catalog_file(&self) -> PathBuf {
        self.config.data_dir.join("catalog.json")
    }

    /// A job instance's checkpoints: named by its number, never by a name a
    /// client chose.
    fn job_dir(&self, instance: u64) -> PathBuf {
        self.config.data_dir.join("jobs").join(instance.to_string())
    }

    /// A new job instance's number: above every kept one and every directory
    /// under `jobs/` (a dropped job's may still be there).
    fn new_instance(&self, kept: &[Kept]) -> u64 {
        use std::sync::atomic::Ordering;
        let on_disk = std::fs::read_dir(self.config.data_dir.join("jobs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let floor = kept
            .iter()
            .map(|k| k.instance)
            .max()
            .unwrap_or(0)
            .max(on_disk)
            + 1;
        let next = self.next_instance.load(Ordering::SeqCst).max(floor);
        self.next_instance.store(next + 1, Ordering::SeqCst);
        next
    }

    /// Runs the statements kept in the data directory again: tables are
    /// declared, jobs resume from their newest checkpoints. Returns how
    /// many statements it ran.
    pub async fn restore(&self) -> Result<usize, StatementError> {
        let path = self.catalog_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(StatementError::new(
                    "58030",
                    format!("reading {}: {e}", path.display()),
                ));
            }
        };
        let file: CatalogFile = serde_json::from_str(&text).map_err(|e| {
            StatementError::new("58030", format!("{} is damaged: {e}", path.display()))
        })?;
        self.next_instance
            .store(file.next_instance, std::sync::atomic::Ordering::SeqCst);
        let mut ran = 0;
        // Tables that failed, with why: a job that reads one fails for that.
        let mut failed_tables: Vec<(String, String)> = Vec::new();
        for kept in &file.statements {
            // A statement that no longer runs (its files moved, or are no
            // longer allowed) is reported; the others start all the same.
            let failed_input = failed_tables
                .iter()
                .find(|(table, _)| !kept.is_table && names_table(&kept.sql, table));
            let result = match (failed_input, self.config.sandbox.check(&kept.sql)) {
                (Some((table, why)), _) => Err(StatementError::new(
                    "55000",
                    format!("it reads table `{table}`, which failed to start: {why}"),
                )),
                (None, Ok(())) => self.run(&kept.sql, Some(kept)).await.map(|_| ()),
                (None, Err(e)) => Err(e),
            };
            match result {
                Ok(()) => ran += 1,
                Err(e) => {
                    if kept.is_table {
                        failed_tables.push((kept.name.clone(), e.message.clone()));
                    }
                    tracing::error!(
                        "{}: the kept statement of `{}` fails, and is left out: {} ({})",
                        path.display(),
                        kept.name,
                        e.message,
                        e.code
                    );
                    self.jobs
                        .failed_to_start(&kept.name, &kept.job(), &kept.sql, e.message);
                    self.failed().push(kept.clone());
                }
            }
        }
        Ok(ran)
    }

    /// Runs a client's `statement` if it changes the catalog; `None` if it
    /// is a query. It may name files only where the sandbox allows.
    pub async fn execute(&self, statement: &str) -> Result<Option<Outcome>, StatementError> {
        self.config.sandbox.check(statement)?;
        self.run(statement, None).await
    }

    /// Runs `statement`; `restoring` is its kept entry when the server runs
    /// its catalog again (the job keeps its name and instance).
    async fn run(
        &self,
        statement: &str,
        restoring: Option<&Kept>,
    ) -> Result<Option<Outcome>, StatementError> {
        let lead2 = lead(statement, 2);
        let lead3 = lead(statement, 3);
        let mut kept = self.kept.lock().await;
        let outcome = if lead2 == "CREATE TABLE" || lead3 == "CREATE TEMPORARY TABLE" {
            let name = object_name(statement)?;
            check_name(&name)?;
            if kept.iter().any(|k| k.is_table && k.name == name) {
                return Err(StatementError::new(
                    "42P07",
                    format!("table `{name}` already exists"),
                ));
            }
            // Planned alone (after the other tables) to check it.
            self.plan(
                &kept,
                statement,
                &format!("check-{name}"),
                &ViewRegistry::new(),
            )
            .await?;
            kept.push(Kept {
                name,
                sql: statement.trim().to_string(),
                is_table: true,
                instance: 0,
            });
            "CREATE TABLE"
        } else if lead3 == "CREATE MATERIALIZED VIEW" || lead2 == "INSERT INTO" {
            let is_view = lead2 == "CREATE MATERIALIZED";
            let name = object_name(statement)?;
            check_name(&name)?;
            if is_view && self.views.describe(&name).is_some() {
                return Err(StatementError::new(
                    "42P07",
                    format!("view `{name}` already exists"),
                ));
            }
            let entry = match restoring {
                Some(k) => k.clone(),
                None => Kept {
                    name: if is_view {
                        name.clone()
                    } else {
                        // One job per INSERT: named after its table, numbered.
                        let n = (1..)
                            .find(|n| {
                                let candidate = format!("insert_{name}_{n}");
                                !kept.iter().any(|k| k.name == candidate)
                            })
                            .unwrap_or(1);
                        format!("insert_{name}_{n}")
                    },
                    sql: statement.trim().to_string(),
                    is_table: false,
                    instance: self.new_instance(&kept),
                },
            };
            self.start(&kept, &entry, restoring.is_some()).await?;
            kept.push(entry);
            if is_view {
                "CREATE MATERIALIZED VIEW"
            } else {
                "INSERT 0 0"
            }
        } else if lead3 == "DROP MATERIALIZED VIEW" || lead2 == "STOP JOB" {
            let name = object_name(statement)?;
            let if_exists = lead(statement, 5).ends_with("IF EXISTS");
            let position = kept.iter().position(|k| !k.is_table && k.name == name);
            match position {
                Some(i) => {
                    let job = kept.remove(i);
                    self.jobs.stop(&job.job());
                    self.views.remove_job(&job.job());
                    self.discard_when_ended(&job);
                }
                None if if_exists || self.drop_failed(&name, false) => {}
                None => {
                    return Err(StatementError::new(
                        "42704",
                        format!("there is no view or job `{name}`"),
                    ));
                }
            }
            if lead2 == "STOP JOB" {
                "STOP JOB"
            } else {
                "DROP MATERIALIZED VIEW"
            }
        } else if lead2 == "DROP TABLE" {
            let name = object_name(statement)?;
            let if_exists = lead(statement, 4).ends_with("IF EXISTS");
            match kept.iter().position(|k| k.is_table && k.name == name) {
                Some(i) => {
                    let dependents: Vec<&str> = kept
                        .iter()
                        .filter(|k| !k.is_table && names_table(&k.sql, &name))
                        .map(|k| k.name.as_str())
                        .collect();
                    if !dependents.is_empty() {
                        return Err(StatementError::new(
                            "2BP01",
                            format!(
                                "cannot drop table `{name}`: {} use it (drop them first)",
                                dependents.join(", ")
                            ),
                        ));
                    }
                    kept.remove(i);
                }
                None if if_exists || self.drop_failed(&name, true) => {}
                None => {
                    return Err(StatementError::new(
                        "42P01",
                        format!("there is no table `{name}`"),
                    ));
                }
            }
            "DROP TABLE"
        } else if lead2 == "CREATE VIEW" || lead2 == "CREATE OR" {
            return Err(StatementError::new(
                "0A000",
                "only materialized views are kept: use CREATE MATERIALIZED VIEW v AS SELECT ..",
            ));
        } else if lead(statement, 1) == "CREATE" || lead(statement, 1) == "DROP" {
            return Err(StatementError::new(
                "0A000",
                format!(
                    "`{lead2}` is not supported: use CREATE TABLE, CREATE MATERIALIZED VIEW, INSERT INTO, DROP MATERIALIZED VIEW, DROP TABLE or STOP JOB"
                ),
            ));
        } else {
            return Ok(None);
        };
        if restoring.is_none() {
            self.save(&kept)?;
        }
        Ok(Some(Outcome::Done {
            tag: outcome.to_string(),
        }))
    }

    async fn plan(
        &self,
        kept: &[Kept],
        statement: &str,
        job: &str,
        views: &ViewRegistry,
    ) -> Result<headwater_sql::SqlJob, StatementError> {
        let options = SqlOptions {
            name: job.to_string(),
            parallelism: self.config.parallelism.max(1),
            views: views.clone(),
            prelude: kept
                .iter()
                .filter(|k| k.is_table)
                .map(|k| k.sql.clone())
                .collect(),
            ..Default::default()
        };
        plan_script(statement, &options).await.map_err(|e| {
            views.remove_job(job);
            sql_error(&e)
        })
    }

    /// Plans and starts the job of a kept statement.
    async fn start(
        &self,
        kept: &[Kept],
        entry: &Kept,
        restoring: bool,
    ) -> Result<(), StatementError> {
        let job = entry.job();
        let planned = self.plan(kept, &entry.sql, &job, &self.views).await?;
        let dir = self.job_dir(entry.instance);
        if !restoring {
            // A new instance never resumes from checkpoints it did not write.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut config = self.config.job.clone();
        config.checkpoint = Some(CheckpointConfig::new(&dir, self.config.checkpoint_interval));
        let spec = JobSpec::of(&planned.graph, &entry.sql, planned.views.clone());
        // Planned under its instance's key (which its view sinks publish
        // under); it runs, logs and counts under its name.
        let mut graph = planned.graph;
        graph.name = entry.name.clone();
        let handle = headwater_runtime::start(graph, config).map_err(|e| {
            self.views.remove_job(&job);
            StatementError::new("XX000", format!("job `{}` cannot start: {e}", entry.name))
        })?;
        let id = self.jobs.track(&handle, spec, &job);
        let (jobs, views) = (self.jobs.clone(), self.views.clone());
        tokio::spawn(async move {
            let state = match handle.wait().await {
                Ok(result) if result.stopped => JobState::Stopped,
                Ok(_) => JobState::Finished,
                Err(JobError::Cancelled) => JobState::Stopped,
                Err(e) => JobState::Failed(e.to_string()),
            };
            if let JobState::Failed(e) = &state {
                tracing::error!(job = %job, "job failed: {e}");
            }
            jobs.ended(id, state);
            views.job_ended(&job);
        });
        Ok(())
    }

    /// Removes a dropped job instance's checkpoints once it has stopped.
    fn discard_when_ended(&self, entry: &Kept) {
        let (jobs, job, dir) = (self.jobs.clone(), entry.job(), self.job_dir(entry.instance));
        tokio::spawn(async move {
            while jobs.is_running(&job) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = std::fs::remove_dir_all(dir);
        });
    }

    /// Writes the statements that hold: to a temporary file, then renamed.
    fn save(&self, kept: &[Kept]) -> Result<(), StatementError> {
        let path = self.catalog_file();
        let temporary = path.with_extension("json.tmp");
        let file = CatalogFile {
            next_instance: self.next_instance.load(std::sync::atomic::Ordering::SeqCst),
            statements: kept.iter().chain(self.failed().iter()).cloned().collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("a catalog serializes");
        let written = std::fs::create_dir_all(&self.config.data_dir)
            .and_then(|_| {
                use std::io::Write;
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|_| std::fs::rename(&temporary, &path));
        written.map_err(|e| {
            // The client learns what failed; the server's paths go to its log.
            tracing::error!("the catalog cannot be saved to {}: {e}", path.display());
            StatementError::new(
                "58030",
                format!(
                    "the catalog cannot be saved ({}): the server's log has more",
                    e.kind()
                ),
            )
        })
    }
}

/// A planning error as a Postgres error: its place is in the message.
fn sql_error(e: &SqlError) -> StatementError {
    let code = match e {
        SqlError::Syntax { .. } => "42601",
        SqlError::Unsupported { .. } => "0A000",
        SqlError::Invalid { message, .. } | SqlError::Plan { message, .. }
            if message.contains("not found") && message.contains("table") =>
        {
            "42P01"
        }
        SqlError::Invalid { message, .. } | SqlError::Plan { message, .. }
            if message.contains("No field named") =>
        {
            "42703"
        }
        _ => "42000",
    };
    StatementError::new(code, e.to_string())
}

/// Whether `sql` names table `table` (a word that is its name, quoted as it
/// was declared or not): the statements that would fail without it.
fn names_table(sql: &str, table: &str) -> bool {
    let Ok(statements) = read_script(sql) else {
        return true; // Unreadable: assume it depends, rather than break it.
    };
    statements
        .iter()
        .flat_map(|s| &s.tokens)
        .any(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_some() => w.value == table,
            Token::Word(w) => w.value.to_lowercase() == table,
            _ => false,
        })
}

/// The name a statement declares, creates or drops: the first word after
/// its leading keywords (unquoted names are lower case, as in queries).
fn object_name(statement: &str) -> Result<String, StatementError> {
    const KEYWORDS: &[&str] = &[
        "CREATE",
        "TEMPORARY",
        "TABLE",
        "MATERIALIZED",
        "VIEW",
        "IF",
        "NOT",
        "EXISTS",
        "DROP",
        "INSERT",
        "INTO",
        "STOP",
        "JOB",
    ];
    let statements = read_script(statement).map_err(|e| sql_error(&e))?;
    let first = statements
        .first()
        .ok_or_else(|| StatementError::new("42601", "an empty statement"))?;
    for token in &first.tokens {
        match &token.token {
            Token::Word(w)
                if w.quote_style.is_none()
                    && KEYWORDS.contains(&w.value.to_uppercase().as_str()) => {}
            Token::Word(w) if w.quote_style.is_some() => return Ok(w.value.clone()),
            Token::Word(w) => return Ok(w.value.to_lowercase()),
            Token::SingleQuotedString(s) => return Ok(s.clone()),
            _ => break,
        }
    }
    Err(StatementError::new(
        "42601",
        format!("no name in `{}`", lead(statement, 4)),
    ))
}
