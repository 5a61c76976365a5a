use std::path::PathBuf;

/// Errors of keyed state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store at {path}: {source}")]
    RocksDb {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("state `{state}`: {message}")]
    Codec { state: String, message: String },
    /// Stored data was written by a newer or older schema than the reader's,
    /// and no migration was given.
    #[error(
        "state `{state}` holds version {stored} values, but its descriptor reads version {expected}; \
         give the descriptor a migration"
    )]
    VersionMismatch {
        state: String,
        stored: u16,
        expected: u16,
    },
    #[error("states `{first}` and `{second}` of one operator hash to the same id; rename one")]
    NameCollision { first: String, second: String },
    #[error("key group {key_group} is not owned by this subtask ({start}..{end})")]
    ForeignKeyGroup {
        key_group: u32,
        start: u32,
        end: u32,
    },
    #[error("state configuration: {0}")]
    Config(String),
}
