//! How a state value is stored: a small envelope around the serde payload.
//!
//! ```text
//! format (u8 = 1) | schema version (u16 BE) | expires at, ms since the epoch (i64 BE; 0 = never) | postcard payload
//! ```
//!
//! The format byte lets this envelope evolve. The schema version is the
//! state's own: when a job changes a state's type, it raises the version in
//! the [`StateDescriptor`] and gives a migration from older versions. Expiry is
//! processing time: a value past it reads as absent, and compaction drops it.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::StateError;

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 2 + 8;

/// Turns a value stored by an older schema version into the current type.
pub type Migration<V> = Arc<dyn Fn(u16, &[u8]) -> Result<V, String> + Send + Sync>;

/// A state's name, value type, schema version and time to live.
pub struct StateDescriptor<V> {
    pub name: String,
    pub version: u16,
    pub ttl: Option<Duration>,
    migration: Option<Migration<V>>,
    _values: PhantomData<fn() -> V>,
}

impl<V> Clone for StateDescriptor<V> {
    fn clone(&self) -> Self {
        StateDescriptor {
            name: self.name.clone(),
            version: self.version,
            ttl: self.ttl,
            migration: self.migration.clone(),
            _values: PhantomData,
        }
    }
}

impl<V: Serialize + DeserializeOwned> StateDescriptor<V> {
    /// A state of version 1 that never expires.
    pub fn new(name: impl Into<String>) -> Self {
        StateDescriptor {
            name: name.into(),
            version: 1,
            ttl: None,
            migration: None,
            _values: PhantomData,
        }
    }

    /// Values expire this long after they were last written.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The schema version of `V`, and how to read values of older versions.
    pub fn with_version(
        mut self,
        version: u16,
        migration: impl Fn(u16, &[u8]) -> Result<V, String> + Send + Sync + 'static,
    ) -> Self {
        self.version = version;
        self.migration = Some(Arc::new(migration));
        self
    }

    /// The stored form of `value`, written now.
    pub fn encode(&self, value: &V, out: &mut Vec<u8>) -> Result<(), StateError> {
        out.clear();
        out.push(FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        let expires = self
            .ttl
            .map_or(0, |ttl| now_ms().saturating_add(ttl.as_millis() as i64));
        out.extend_from_slice(&expires.to_be_bytes());
        let payload = postcard::to_extend(value, std::mem::take(out)).map_err(|e| self.error(e))?;
        *out = payload;
        Ok(())
    }

    /// The value in `stored`, or `None` if it has expired.
    pub fn decode(&self, stored: &[u8]) -> Result<Option<V>, StateError> {
        let (version, expires, payload) = split(stored).ok_or_else(|| StateError::Codec {
            state: self.name.clone(),
            message: format!(
                "a stored value of {} bytes has no valid envelope",
                stored.len()
            ),
        })?;
        if expires != 0 && expires <= now_ms() {
            return Ok(None);
        }
        if version == self.version {
            return postcard::from_bytes(payload)
                .map(Some)
                .map_err(|e| self.error(e));
        }
        match &self.migration {
            Some(migrate) => {
                migrate(version, payload)
                    .map(Some)
                    .map_err(|message| StateError::Codec {
                        state: self.name.clone(),
                        message,
                    })
            }
            None => Err(StateError::VersionMismatch {
                state: self.name.clone(),
                stored: version,
                expected: self.version,
            }),
        }
    }

    fn error(&self, e: postcard::Error) -> StateError {
        StateError::Codec {
            state: self.name.clone(),
            message: e.to_string(),
        }
    }
}

/// The version, expiry and payload of a stored value.
fn split(stored: &[u8]) -> Option<(u16, i64, &[u8])> {
    if stored.len() < HEADER || stored[0] != FORMAT {
        return None;
    }
    let version = u16::from_be_bytes([stored[1], stored[2]]);
    let expires = i64::from_be_bytes(stored[3..11].try_into().ok()?);
    Some((version, expires, &stored[HEADER..]))
}

/// Whether a stored value has expired at `now_ms`: what compaction asks.
pub fn is_expired(stored: &[u8], now_ms: i64) -> bool {
    split(stored).is_some_and(|(_, expires, _)| expires != 0 && expires <= now_ms)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct V1 {
        count: u32,
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct V2 {
        count: u64,
        label: String,
    }

    #[test]
    fn round_trip_and_versions() {
        let v1 = StateDescriptor::<V1>::new("s");
        let mut bytes = Vec::new();
        v1.encode(&V1 { count: 7 }, &mut bytes).unwrap();
        assert_eq!(v1.decode(&bytes).unwrap(), Some(V1 { count: 7 }));

        let strict = StateDescriptor::<V2> {
            version: 2,
            ..StateDescriptor::new("s")
        };
        assert!(matches!(
            strict.decode(&bytes),
            Err(StateError::VersionMismatch {
                stored: 1,
                expected: 2,
                ..
            })
        ));

        let migrating = StateDescriptor::<V2>::new("s").with_version(2, |version, payload| {
            assert_eq!(version, 1);
            let old: V1 = postcard::from_bytes(payload).map_err(|e| e.to_string())?;
            Ok(V2 {
                count: old.count as u64,
                label: "migrated".into(),
            })
        });
        assert_eq!(
            migrating.decode(&bytes).unwrap(),
            Some(V2 {
                count: 7,
                label: "migrated".into()
            })
        );
        assert!(matches!(v1.decode(b"junk"), Err(StateError::Codec { .. })));
    }

    #[test]
    fn expired_values_read_as_absent() {
        let d = StateDescriptor::<u32>::new("t").with_ttl(Duration::from_millis(30));
        let mut bytes = Vec::new();
        d.encode(&5, &mut bytes).unwrap();
        assert_eq!(d.decode(&bytes).unwrap(), Some(5));
        assert!(!is_expired(&bytes, now_ms()));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(d.decode(&bytes).unwrap(), None);
        assert!(is_expired(&bytes, now_ms()));
    }
}
