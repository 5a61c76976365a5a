//! A client's session: the settings a connection (or one HTTP request) has
//! `SET`, and the statements that only touch them (`SET`, `RESET`, `SHOW`,
//! and transaction control, which a read-only server accepts and ignores).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::engine::{Outcome, StatementError};

/// The version clients are told: a Postgres 16 server, so that drivers that
/// parse it (SQLAlchemy, JDBC) accept it.
pub const SERVER_VERSION: &str = "16.6";

/// `version()`: what `SELECT version()` answers.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Headwater {}) on {}-{}, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// The settings of one client session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `SET statement_timeout`: `Some(ZERO)` turns the server's default off.
    pub statement_timeout: Option<Duration>,
    /// Other settings clients set (`DateStyle`, `application_name`, ..):
    /// kept so that `SHOW` answers what was set; they change nothing else.
    values: BTreeMap<String, String>,
}

/// The first words of the statements a session answers by itself.
pub const SESSION_COMMANDS: &[&str] = &[
    "SET", "RESET", "SHOW", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "DISCARD",
];

impl Session {
    /// The timeout of the next statement, given the server's default.
    pub fn timeout(&self, server_default: Option<Duration>) -> Option<Duration> {
        match self.statement_timeout {
            Some(Duration::ZERO) => None,
            Some(t) => Some(t),
            None => server_default,
        }
    }

    /// Runs `statement` if it is a session statement; `None` otherwise.
    pub fn execute(
        &mut self,
        statement: &str,
        server_default: Option<Duration>,
    ) -> Option<Result<Outcome, StatementError>> {
        let words = words(statement)?;
        let first = words.first()?.to_uppercase();
        if !SESSION_COMMANDS.contains(&first.as_str()) {
            return None;
        }
        Some(match first.as_str() {
            "SET" => self.set(&words[1..]).map(|()| done("SET")),
            "RESET" => self.reset(&words[1..]).map(|()| done("RESET")),
            "SHOW" => self.show(&words[1..], server_default),
            "BEGIN" | "START" => Ok(done("BEGIN")),
            "COMMIT" | "END" => Ok(done("COMMIT")),
            "ROLLBACK" | "ABORT" => Ok(done("ROLLBACK")),
            "DISCARD" => {
                *self = Session::default();
                Ok(done("DISCARD ALL"))
            }
            _ => return None,
        })
    }

    fn set(&mut self, words: &[String]) -> Result<(), StatementError> {
        // SET [SESSION | LOCAL] name { TO | = } value [, ..]; SET TIME ZONE value.
        let mut words = words;
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("session") || w.eq_ignore_ascii_case("local"))
        {
            words = &words[1..];
        }
        let (name, value) = match words {
            [time, zone, rest @ ..]
                if time.eq_ignore_ascii_case("time") && zone.eq_ignore_ascii_case("zone") =>
            {
                ("timezone".to_string(), rest.join(" "))
            }
            [name, to, rest @ ..] if to == "=" || to.eq_ignore_ascii_case("to") => {
                (name.to_lowercase(), rest.join(""))
            }
            _ => {
                return Err(StatementError::new(
                    "42601",
                    "expected SET name = value or SET name TO value",
                ));
            }
        };
        if name == "statement_timeout" {
            self.statement_timeout = Some(parse_timeout(&value)?);
        } else {
            self.values.insert(name, value);
        }
        Ok(())
    }

    fn reset(&mut self, words: &[String]) -> Result<(), StatementError> {
        match words {
            [all] if all.eq_ignore_ascii_case("all") => *self = Session::default(),
            [name] if name.eq_ignore_ascii_case("statement_timeout") => {
                self.statement_timeout = None
            }
            [name] => {
                self.values.remove(&name.to_lowercase());
            }
            _ => {
                return Err(StatementError::new(
                    "42601",
                    "expected RESET name or RESET ALL",
                ));
            }
        }
        Ok(())
    }

    fn show(
        &self,
        words: &[String],
        server_default: Option<Duration>,
    ) -> Result<Outcome, StatementError> {
        let name = words.join(" ").to_lowercase();
        let timeout = match self.timeout(server_default) {
            Some(t) => format!("{}ms", t.as_millis()),
            None => "0".to_string(),
        };
        let value = match name.as_str() {
            "all" => return self.show_all(&timeout),
            "statement_timeout" => timeout,
            "time zone" | "timezone" => self.value("timezone", "UTC"),
            "transaction isolation level" | "transaction_isolation" => {
                self.value("transaction_isolation", "read committed")
            }
            other => match DEFAULTS.iter().find(|(n, _)| *n == other) {
                Some((n, default)) => self.value(n, default),
                None if self.values.contains_key(other) => self.value(other, ""),
                None => {
                    return Err(StatementError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{other}\""),
                    ));
                }
            },
        };
        let column = words
            .last()
            .map_or("setting", String::as_str)
            .to_lowercase();
        rows(vec![column], vec![vec![value]])
    }

    fn show_all(&self, timeout: &str) -> Result<Outcome, StatementError> {
        let mut settings: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(n, v)| (n.to_string(), self.value(n, v)))
            .collect();
        settings.extend(self.values.clone());
        settings.insert("statement_timeout".into(), timeout.to_string());
        let (names, values): (Vec<String>, Vec<String>) = settings.into_iter().unzip();
        rows(vec!["name".into(), "setting".into()], vec![names, values])
    }

    fn value(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

/// A setting's value before a client sets it (`current_setting()`).
pub fn default_setting(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The settings `SHOW` knows before a client sets them.
const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("search_path", "public"),
    ("timezone", "UTC"),
    ("application_name", ""),
    ("extra_float_digits", "1"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "on"),
    ("transaction_read_only", "on"),
    ("max_identifier_length", "63"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("is_superuser", "off"),
];

fn done(tag: &str) -> Outcome {
    Outcome::Done {
        tag: tag.to_string(),
    }
}

/// An answer of text columns.
fn rows(names: Vec<String>, columns: Vec<Vec<String>>) -> Result<Outcome, StatementError> {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as _)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| StatementError::new("XX000", e.to_string()))?;
    Ok(Outcome::batches(schema, vec![batch]))
}

/// The statement's words and symbols, unquoted, without comments; `None` if
/// it does not tokenize (the query planner will say why).
fn words(statement: &str) -> Option<Vec<String>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, statement)
        .tokenize()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            .map(|t| match t {
                Token::Word(w) => w.value,
                Token::SingleQuotedString(s) => s,
                other => other.to_string(),
            })
            .collect(),
    )
}

/// A `statement_timeout`: milliseconds, or a number with a unit (`5s`,
/// `500ms`, `1min`); `0` is no timeout.
fn parse_timeout(value: &str) -> Result<Duration, StatementError> {
    let value = value.trim().to_lowercase();
    if value == "default" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad_timeout(&value))?;
    let millis = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1e3,
        "min" => n * 60e3,
        "h" => n * 3600e3,
        "d" => n * 86_400e3,
        _ => return Err(bad_timeout(&value)),
    };
    if !(0.0..=i32::MAX as f64).contains(&millis) {
        return Err(bad_timeout(&value));
    }
    Ok(Duration::from_millis(millis as u64))
}

fn bad_timeout(value: &str) -> StatementError {
    StatementError::new(
        "22023",
        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_is_set_shown_and_reset() {
        let mut s = Session::default();
        let default = Some(Duration::from_secs(300));
        assert!(
            s.execute("SET statement_timeout = '1500ms'", default)
                .unwrap()
                .is_ok()
        );
        assert_eq!(s.timeout(default), Some(Duration::from_millis(1500)));
        assert!(
            s.execute("set statement_timeout to 2", default)
                .unwrap()
                .is_ok()
        );
        assert_eq!(s.timeout(default), Some(Duration::from_millis(2)));
        assert!(
            s.execute("SET statement_timeout = 0", default)
                .unwrap()
                .is_ok()
        );
        assert_eq!(s.timeout(default), None);
        assert!(
            s.execute("RESET statement_timeout", default)
                .unwrap()
                .is_ok()
        );
        assert_eq!(s.timeout(default), default);
        assert!(
            s.execute("SET statement_timeout = 'soon'", default)
                .unwrap()
                .is_err()
        );
        assert!(s.execute("SELECT 1", default).is_none());
    }

    #[test]
    fn show_answers_known_and_set_parameters_and_refuses_others() {
        let mut s = Session::default();
        let Some(Ok(Outcome::Rows(r))) = s.execute("SHOW server_version", None) else {
            panic!("no rows");
        };
        assert_eq!(r.schema.field(0).name(), "server_version");
        s.execute("SET application_name = 'bi'", None)
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.execute("SHOW application_name", None),
            Some(Ok(Outcome::Rows(_)))
        ));
        let Some(Err(e)) = s.execute("SHOW no_such_thing", None) else {
            panic!("accepted");
        };
        assert_eq!(e.code, "42704");
    }
}
