//! The `headwater` command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use headwater::prelude::*;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    }
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
