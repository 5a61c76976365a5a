//! Serving views to clients, and (under `headwater serve`) taking statements
//! that start jobs: the Postgres wire protocol ([`pg`]) and HTTP ([`http`])
//! both hand statements to the [`engine`]; [`catalog`] keeps what clients
//! declare, [`jobs`] what runs; [`client`] is `headwater query`.

pub mod catalog;
pub mod client;
pub mod engine;
pub mod http;
pub mod jobs;
pub mod pg;
