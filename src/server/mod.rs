//! Serving a job's materialized views to clients: the Postgres wire protocol ([`pg`]).

pub mod pg;
