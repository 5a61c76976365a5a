//! How a job runs: parallelism, batch and channel sizes, timeouts.

use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::CheckpointConfig;
use crate::error::RuntimeError;
use crate::key_groups::{DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM};

/// Settings of one job. The defaults suit a laptop and a test alike.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The parallelism of an operator that does not set its own.
    pub default_parallelism: usize,
    /// The number of key groups, and so the largest parallelism of a keyed operator.
    pub max_parallelism: u32,
    /// The number of batches a channel holds before its sender waits.
    pub channel_capacity: usize,
    /// A source partition with no data for this long is marked idle, so it does
    /// not hold the watermark back.
    pub idle_timeout: Duration,
    /// Where keyed state lives; a temporary directory, removed when the job
    /// ends, if not set.
    pub state_dir: Option<PathBuf>,
    /// Memory for keyed state: the block cache and memtables of every RocksDB
    /// instance of the job together.
    pub state_memory_limit: usize,
    /// Periodic checkpoints, for exactly-once results and recovery; none if `None`.
    pub checkpoint: Option<CheckpointConfig>,
    /// A checkpoint or savepoint directory to start from. Without it, a job
    /// with checkpoints resumes from the newest complete one in its directory.
    pub restore_from: Option<PathBuf>,
    /// Starts even when the restored checkpoint holds state of an operator the
    /// job no longer has (that state is dropped). Without it such a restore is
    /// refused, naming the operator, as Flink's `--allowNonRestoredState`.
    pub allow_non_restored_state: bool,
    /// What happens when a task fails while the job has checkpoints: every
    /// task restarts from the latest complete checkpoint, this many times.
    /// Without checkpoints a failed job fails (a restart would replay its
    /// input into sinks that have already written it).
    pub restart: RestartStrategy,
}

impl JobConfig {
    /// Refuses settings the runtime cannot run with, naming the setting.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |m: String| Err(RuntimeError::InvalidConfig(m));
        if !(1..=MAX_MAX_PARALLELISM).contains(&self.max_parallelism) {
            return invalid(format!(
                "max parallelism {} is outside 1..={MAX_MAX_PARALLELISM}: key groups are stored as 16-bit numbers",
                self.max_parallelism
            ));
        }
        if self.default_parallelism == 0 {
            return invalid("the parallelism must be at least 1".into());
        }
        if self.channel_capacity == 0 {
            return invalid("the channel capacity must be at least 1".into());
        }
        if let Some(checkpoint) = &self.checkpoint {
            if checkpoint.interval.is_zero() {
                return invalid("the checkpoint interval must be above zero".into());
            }
            if checkpoint.timeout.is_zero() {
                return invalid("the checkpoint timeout must be above zero".into());
            }
            if checkpoint.retained == 0 {
                return invalid("at least one complete checkpoint must be retained".into());
            }
        }
        Ok(())
    }
}

/// How a failed job with checkpoints is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    /// The first failure fails the job.
    None,
    /// Restart after `delay`, at most `attempts` times in a row: a checkpoint
    /// completed after a restart shows progress, and starts the count again.
    FixedDelay { attempts: u32, delay: Duration },
}

impl RestartStrategy {
    /// The number of restarts allowed in a row.
    pub fn attempts(&self) -> u32 {
        match self {
            RestartStrategy::None => 0,
            RestartStrategy::FixedDelay { attempts, .. } => *attempts,
        }
    }

    /// The wait before a restart.
    pub fn delay(&self) -> Duration {
        match self {
            RestartStrategy::None => Duration::ZERO,
            RestartStrategy::FixedDelay { delay, .. } => *delay,
        }
    }
}

impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(1),
        }
    }
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            default_parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            channel_capacity: 8,
            idle_timeout: Duration::from_secs(5),
            state_dir: None,
            state_memory_limit: 256 << 20,
            checkpoint: None,
            restore_from: None,
            allow_non_restored_state: false,
            restart: RestartStrategy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_run_are_refused() {
        assert!(JobConfig::default().validate().is_ok());
        let with = |f: fn(&mut JobConfig)| {
            let mut config = JobConfig {
                checkpoint: Some(CheckpointConfig::new("/tmp/x", Duration::from_secs(1))),
                ..JobConfig::default()
            };
            f(&mut config);
            config.validate().map_err(|e| e.to_string())
        };
        assert!(with(|_| {}).is_ok());
        let zero_interval = with(|c| c.checkpoint.as_mut().unwrap().interval = Duration::ZERO);
        assert!(zero_interval.unwrap_err().contains("checkpoint interval"));
        let wide = with(|c| c.max_parallelism = 65_536);
        assert!(wide.unwrap_err().contains("max parallelism 65536"));
        assert!(with(|c| c.max_parallelism = 0).is_err());
        assert!(with(|c| c.max_parallelism = 32_768).is_ok());
        assert!(with(|c| c.checkpoint.as_mut().unwrap().retained = 0).is_err());
    }
}
