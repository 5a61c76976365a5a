//! Headwater's end-to-end tests, in one test binary: each module is what was
//! a test file of its own. One binary links once, and compiles the generic
//! code the tests share once (37 binaries took about 18 min of the CI's
//! build). Run one module's tests with a filter:
//! `scripts/test.sh --test integration sql_golden::`. `tests/large_state.rs`
//! is a binary of its own, as it measures its process's peak memory.

mod common;
mod rescale_join;
mod window_support;

mod after_last_barrier;
mod backpressure;
mod checkpoint_failures;
mod crash_recovery;
mod decode_errors;
mod dedup_api;
mod failures;
mod file_source;
mod finished_views;
mod generator_positions;
mod graceful_stop;
mod hash_exchange;
mod hostile_clients;
mod interval_join;
mod joins_api;
mod kafka_broker;
mod kafka_exactly_once;
mod kafka_sink;
mod kafka_source;
mod kafka_upsert_source;
mod keyed_state;
mod last_checkpoint;
mod operator_ids;
mod parallelism;
mod process_function;
mod rescale_matrix;
mod restarts;
mod savepoints;
mod serve;
mod sql_connectors;
mod sql_golden;
mod sql_udfs;
mod top_n_api;
mod typed_api;
mod view_consistency;
mod view_crash;
mod views;
mod watermarks;
mod windows;
