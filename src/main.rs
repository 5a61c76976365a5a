//! The `headwater` command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use headwater::prelude::*;
use headwater::server::catalog::{Catalog, ServeConfig};
use headwater::server::client::Answer;
use headwater::server::engine::Engine;
use headwater::server::jobs::{JobSpec, JobState, Jobs};
use headwater::server::query::QueryLimits;
use headwater::server::sandbox::Sandbox;
use headwater::sql::views::ViewQueries;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "headwater",
    version,
    about = "A stream processing runtime: dataflows over Arrow batches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes generated events as JSON lines, for file sources, tests and benchmarks.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Runs a SQL script: its INSERT INTO and SELECT statements as one job.
    /// Over bounded sources it ends by itself; otherwise it runs until Ctrl-C.
    Run {
        /// The script (CREATE TABLE, INSERT INTO .. SELECT, SELECT, EXPLAIN,
        /// CREATE MATERIALIZED VIEW).
        script: PathBuf,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        server: ServerOptions,
    },
    /// Serves views and takes statements from clients (psql, HTTP):
    /// CREATE TABLE, CREATE MATERIALIZED VIEW (starts a job that keeps the
    /// view), INSERT INTO (starts a job), DROP MATERIALIZED VIEW, STOP JOB,
    /// DROP TABLE, and queries over the views.
    Serve {
        /// Keeps the catalog and the jobs' checkpoints; a server started
        /// over it again resumes every job (a temporary directory if not set).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A directory whose files clients' statements may read and write
        /// (a table's 'path', 'decode-error.path'); repeatable. None by
        /// default: a statement naming any file is refused.
        #[arg(long = "allow-path", value_name = "DIR")]
        allow_paths: Vec<PathBuf>,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        server: ServerOptions,
    },
    /// Runs statements on a server (`headwater run` or `serve`) and prints
    /// the last one's rows as a table.
    Query {
        /// The SQL: one or more statements.
        sql: String,
        /// The server's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:6879")]
        url: String,
        /// The server's bearer token (or HEADWATER_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Runs a built-in job.
    Job {
        #[command(subcommand)]
        job: Job,
        #[command(flatten)]
        run: RunOptions,
    },
}

#[derive(Subcommand)]
enum Job {
    /// Per customer and minute, the order events and their amount; per event,
    /// the customer's running count. Exactly-once with --checkpoint-dir.
    OrderMetrics {
        /// JSON lines of order events (`headwater generate orders`).
        #[arg(long)]
        input: PathBuf,
        /// Results go to <output>/windows/ and <output>/counts/.
        #[arg(long)]
        output: PathBuf,
    },
}

/// How a job runs: parallelism, checkpoints, state.
#[derive(clap::Args)]
struct RunOptions {
    #[arg(long, global = true, default_value_t = 2)]
    parallelism: usize,
    /// Checkpoints go here; a job started over a complete checkpoint resumes from it.
    #[arg(long, global = true)]
    checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, such as 500ms, 10s or 1m (default 10s; 1s
    /// for a job with views, whose readers see each checkpoint).
    #[arg(long, global = true, value_parser = parse_duration)]
    checkpoint_interval: Option<std::time::Duration>,
    /// Starts from this savepoint (or checkpoint) directory.
    #[arg(long, global = true)]
    from_savepoint: Option<PathBuf>,
    /// Starts even if the checkpoint holds state of operators the job no
    /// longer has (a changed query); that state is dropped.
    #[arg(long, global = true)]
    allow_non_restored_state: bool,
    /// Where keyed state lives while the job runs (a temporary directory if not set).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// With checkpoints: restarts from the latest checkpoint after a task
    /// fails, in a row (a completed checkpoint starts the count again); 0 fails
    /// the job at the first failure.
    #[arg(long, global = true, default_value_t = 3)]
    restart_attempts: u32,
    /// The wait before such a restart.
    #[arg(long, global = true, default_value = "1s", value_parser = parse_duration)]
    restart_delay: std::time::Duration,
}

/// Where a job's views are served, and who may read them.
#[derive(clap::Args)]
struct ServerOptions {
    /// The Postgres wire protocol port (0 picks a free port).
    #[arg(long, default_value_t = 6878)]
    pg_port: u16,
    /// The HTTP API port (0 picks a free port).
    #[arg(long, default_value_t = 6879)]
    http_port: u16,
    /// The address the servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// A password Postgres clients must give (MD5; or HEADWATER_PASSWORD).
    #[arg(long)]
    password: Option<String>,
    /// A bearer token HTTP clients must send (or HEADWATER_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// The memory one client query may use (sorts, aggregates, joins), such
    /// as 512MiB or 2GiB; past it the query fails (SQLSTATE 53200).
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    query_memory: usize,
    /// The default statement timeout of client statements, such as 30s or
    /// 5m; 0 for none. A session may `SET statement_timeout`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    statement_timeout: std::time::Duration,
    /// Connections open at once, for each of Postgres and HTTP; more are
    /// refused (SQLSTATE 53300; HTTP status 503).
    #[arg(long, default_value_t = 100)]
    max_connections: usize,
}

impl ServerOptions {
    /// An engine over `views` under these options' limits, which answers
    /// Postgres clients' catalog queries.
    fn engine(&self, views: headwater::operators::view::ViewRegistry, jobs: Arc<Jobs>) -> Engine {
        let queries = ViewQueries::new(views)
            .with_setup(Arc::new(headwater::server::query::add_postgres_catalog));
        let limits = QueryLimits {
            memory: self.query_memory,
            statement_timeout: (!self.statement_timeout.is_zero())
                .then_some(self.statement_timeout),
            max_connections: self.max_connections.max(1),
            ..QueryLimits::default()
        };
        Engine::read_only(queries, jobs, limits)
    }

    /// Listens on both ports, prints the addresses, and serves `engine`.
    async fn start(&self, engine: Engine) -> anyhow::Result<()> {
        let pg = tokio::net::TcpListener::bind((self.bind, self.pg_port))
            .await
            .with_context(|| format!("listening on {}:{} (--pg-port)", self.bind, self.pg_port))?;
        let http = tokio::net::TcpListener::bind((self.bind, self.http_port))
            .await
            .with_context(|| {
                format!(
                    "listening on {}:{} (--http-port)",
                    self.bind, self.http_port
                )
            })?;
        println!("postgres: {}", pg.local_addr()?);
        println!("http: http://{}", http.local_addr()?);
        let password = self
            .password
            .clone()
            .or_else(|| std::env::var("HEADWATER_PASSWORD").ok());
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("HEADWATER_TOKEN").ok());
        if !self.bind.is_loopback() && (password.is_none() || token.is_none()) {
            tracing::warn!(
                "listening on {} beyond this machine with no {}: anyone who reaches it can run statements",
                self.bind,
                match (&password, &token) {
                    (None, None) => "--password or --token",
                    (None, _) => "--password (Postgres)",
                    _ => "--token (HTTP)",
                }
            );
        }
        tokio::spawn(headwater::server::pg::serve(pg, engine.clone(), password));
        tokio::spawn(headwater::server::http::serve(http, engine, token));
        Ok(())
    }
}

/// A size such as 512MiB, 2GiB, 100MB or a number of bytes.
fn parse_size(text: &str) -> Result<usize, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 512MiB or 2GiB"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}`: the unit is one of B, KiB, MiB, GiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s or 1m"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(
            n.checked_mul(60)
                .ok_or_else(|| format!("`{text}` is too long"))?,
        ),
        _ => return Err(format!("`{text}`: the unit is one of ms, s, m")),
    })
}

#[derive(Subcommand)]
enum Generate {
    /// Order-lifecycle events of an online shop (the `orders` source), bounded.
    Orders {
        /// How many orders (each makes 2 to 4 events, plus duplicates).
        #[arg(long, default_value_t = 1000)]
        orders: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The share of events delivered twice.
        #[arg(long, default_value_t = 0.01)]
        duplicate_rate: f64,
        /// Where to write; standard output if not given.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// The size of each runtime thread's stack: the planner recurses over a
/// statement's expression tree (DataFusion grows its own stack where it
/// recurses most; statements are bounded in size before planning).
const THREAD_STACK: usize = 16 << 20;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
        .context("starting the runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Generate {
            what:
                Generate::Orders {
                    orders,
                    seed,
                    duplicate_rate,
                    output,
                },
        } => generate_orders(orders, seed, duplicate_rate, output).await,
        Command::Run {
            script,
            run,
            server,
        } => run_script(&script, run, server).await,
        Command::Serve {
            data_dir,
            allow_paths,
            run,
            server,
        } => serve(data_dir, allow_paths, run, server).await,
        Command::Query { sql, url, token } => query(&url, token, &sql).await,
        Command::Job { job, run } => run_job(job, run).await,
    }
}

impl RunOptions {
    fn job_config(&self) -> JobConfig {
        JobConfig {
            default_parallelism: self.parallelism.max(1),
            checkpoint: self.checkpoint_dir.as_ref().map(|dir| {
                headwater::runtime::checkpoint::CheckpointConfig::new(
                    dir,
                    self.checkpoint_interval
                        .unwrap_or(std::time::Duration::from_secs(10)),
                )
            }),
            restore_from: self.from_savepoint.clone(),
            allow_non_restored_state: self.allow_non_restored_state,
            state_dir: self.state_dir.clone(),
            restart: match self.restart_attempts {
                0 => RestartStrategy::None,
                attempts => RestartStrategy::FixedDelay {
                    attempts,
                    delay: self.restart_delay,
                },
            },
            ..JobConfig::default()
        }
    }
}

async fn run_script(
    script: &std::path::Path,
    run: RunOptions,
    server: ServerOptions,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(script).with_context(|| format!("reading {}", script.display()))?;
    let name = script
        .file_stem()
        .map_or("sql-job".into(), |s| s.to_string_lossy().into_owned());
    let views = headwater::operators::view::ViewRegistry::new();
    let options = headwater::sql::SqlOptions {
        name,
        parallelism: run.parallelism.max(1),
        views: views.clone(),
        ..Default::default()
    };
    let job = match headwater::sql::plan_script(&text, &options).await {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {}: {e}", script.display());
            std::process::exit(1);
        }
    };
    for explain in &job.explains {
        println!("{explain}");
    }
    if job.pipelines == 0 {
        return Ok(());
    }
    let mut config = run.job_config();
    if job.views.is_empty() {
        return wait_for(headwater::runtime::start(job.graph, config)?).await;
    }
    // Views are read as of completed checkpoints: a job with views takes them.
    let interval = run
        .checkpoint_interval
        .unwrap_or(std::time::Duration::from_secs(1));
    let temporary = match &run.checkpoint_dir {
        Some(dir) => {
            config.checkpoint = Some(headwater::runtime::checkpoint::CheckpointConfig::new(
                dir, interval,
            ));
            None
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("headwater-checkpoints-")
                .tempdir()
                .context("making a temporary checkpoint directory")?;
            config.checkpoint = Some(headwater::runtime::checkpoint::CheckpointConfig::new(
                dir.path(),
                interval,
            ));
            Some(dir)
        }
    };
    let jobs = Arc::new(Jobs::default());
    let engine = server.engine(views.clone(), jobs.clone());
    server.start(engine).await?;
    println!("views: {}", job.views.join(", "));
    let job_name = job.graph.name.clone();
    let spec = JobSpec::of(&job.graph, &text, job.views.clone());
    let handle = headwater::runtime::start(job.graph, config)?;
    let id = jobs.track(&handle, spec, &job_name);
    let stop = handle.stop_token();
    let result = wait_for(handle).await;
    views.job_ended(&job_name);
    jobs.ended(
        id,
        match &result {
            Ok(()) if stop.is_cancelled() => JobState::Stopped,
            Ok(()) => JobState::Finished,
            Err(e) => JobState::Failed(e.to_string()),
        },
    );
    if result.is_ok() && !stop.is_cancelled() {
        // A bounded job's views stay readable until it is stopped.
        eprintln!("input ended; serving the views until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(temporary);
    result
}

async fn serve(
    data_dir: Option<PathBuf>,
    allow_paths: Vec<PathBuf>,
    run: RunOptions,
    server: ServerOptions,
) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(&allow_paths).context("an --allow-path directory")?;
    let (data_dir, temporary) = match data_dir {
        Some(dir) => (dir, None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("headwater-serve-")
                .tempdir()
                .context("making a temporary data directory")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let views = headwater::operators::view::ViewRegistry::new();
    let jobs = Arc::new(Jobs::default());
    let mut job = run.job_config();
    job.checkpoint = None;
    let catalog = Arc::new(Catalog::new(
        ServeConfig {
            data_dir: data_dir.clone(),
            parallelism: run.parallelism.max(1),
            checkpoint_interval: run
                .checkpoint_interval
                .unwrap_or(std::time::Duration::from_secs(1)),
            job,
            sandbox,
        },
        views.clone(),
        jobs.clone(),
    ));
    let restored = catalog
        .restore()
        .await
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
    let engine = Engine {
        catalog: Some(catalog),
        ..server.engine(views, jobs.clone())
    };
    server.start(engine).await?;
    println!("data: {}", data_dir.display());
    if restored > 0 {
        println!("restored {restored} statements");
    }
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("stopping");
    jobs.stop_all();
    // Give the jobs their final checkpoint.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while jobs.list().iter().any(|j| j.state == "running") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(temporary);
    Ok(())
}

async fn query(url: &str, token: Option<String>, sql: &str) -> anyhow::Result<()> {
    let token = token.or_else(|| std::env::var("HEADWATER_TOKEN").ok());
    match headwater::server::client::query(url, token.as_deref(), sql).await {
        Ok(Answer::Rows(batches, schema)) => {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                let empty = arrow::array::RecordBatch::new_empty(schema);
                println!("{}", arrow::util::pretty::pretty_format_batches(&[empty])?);
            } else {
                println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
            }
            println!("({rows} row{})", if rows == 1 { "" } else { "s" });
            Ok(())
        }
        Ok(Answer::Done(tag)) => {
            println!("{tag}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn run_job(job: Job, run: RunOptions) -> anyhow::Result<()> {
    let env = StreamEnvironment::with_config(run.job_config());
    match job {
        Job::OrderMetrics { input, output } => {
            headwater::jobs::order_metrics(&env, &input, &output)?;
        }
    }
    wait_for(env.execute()?).await
}

/// Runs a job to its end; Ctrl-C stops it gracefully.
async fn wait_for(job: JobHandle) -> anyhow::Result<()> {
    let stop = job.stop_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    let result = job.wait().await?;
    eprintln!("job finished in {:.2?}", result.duration);
    Ok(())
}

async fn generate_orders(
    orders: u64,
    seed: u64,
    duplicate_rate: f64,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let env = StreamEnvironment::new()
        .with_parallelism(1)
        .with_name("generate-orders");
    let mut batches = env
        .source(
            OrdersSource::new(seed)
                .orders(orders)
                .duplicate_rate(duplicate_rate),
        )
        .collect()?;
    let job = env.execute()?;
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
    while let Some(batch) = batches.recv().await {
        writer.write(&batch)?;
    }
    writer.finish()?;
    drop(writer);
    out.flush()?;
    job.wait().await?;
    Ok(())
}
