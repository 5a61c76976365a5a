//! Postgres cancel requests: a client opens a second connection and sends
//! its process id and secret; the statement its first connection is running
//! stops (57014). Each statement gets a fresh token, so a late cancel never
//! stops the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use tokio_util::sync::CancellationToken;

/// The connections a `CancelRequest` can reach, by process id and secret.
#[derive(Default)]
pub struct Cancels {
    pub connections: Mutex<HashMap<(i32, Vec<u8>), Arc<Statements>>>,
}

/// A connection's running statement, which a cancel stops.
#[derive(Default)]
pub struct Statements {
    pub current: Mutex<CancellationToken>,
}

impl Statements {
    /// A token for the statement that starts now (an earlier cancel is spent).
    pub fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = token.clone();
        token
    }
}

/// Unregisters a connection from [`Cancels`] when it closes.
pub struct Registered {
    pub key: (i32, Vec<u8>),
    pub cancels: Arc<Cancels>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut connections = self
            .cancels
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        connections.remove(&self.key);
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let statements = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(statements) = statements {
            statements
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .cancel();
        }
    }
}
