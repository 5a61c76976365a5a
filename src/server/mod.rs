//! Serving views to clients, and (under `headwater serve`) taking statements
//! that start jobs: the Postgres wire protocol ([`pg`]) and HTTP ([`http`])
//! both hand statements to the [`engine`], which keeps each client's
//! [`session`], plans queries under the server's limits ([`query`]) and
//! bounds them in time ([`guard`]); [`catalog`] keeps what clients declare,
//! within the directories the operator allowed ([`sandbox`]), and [`jobs`]
//! what runs; [`client`] is `headwater query`.

pub mod catalog;
pub mod client;
pub mod engine;
pub mod guard;
pub mod http;
pub mod http_connections;
pub mod jobs;
pub mod pg;
pub mod query;
pub mod sandbox;
pub mod session;
