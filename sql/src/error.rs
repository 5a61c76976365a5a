//! Errors of the SQL layer: what is wrong, and where in the script.

use std::fmt;

use datafusion::sql::sqlparser;

/// A line and column in a SQL script, both from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

impl From<sqlparser::tokenizer::Location> for Position {
    fn from(l: sqlparser::tokenizer::Location) -> Self {
        Position {
            line: l.line,
            column: l.column,
        }
    }
}

/// Why a script cannot run. Every kind names the place in the script.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text is not SQL Headwater can read.
    #[error("{at}: syntax error: {message}")]
    Syntax { at: Position, message: String },
    /// Valid SQL that is wrong: an unknown table or column, a type mismatch.
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
    /// Valid SQL that a streaming job cannot run (yet).
    #[error("{at}: {message}")]
    Unsupported { at: Position, message: String },
    /// Building the dataflow failed.
    #[error("{at}: {message}")]
    Plan { at: Position, message: String },
}

impl SqlError {
    pub fn position(&self) -> Position {
        match self {
            SqlError::Syntax { at, .. }
            | SqlError::Invalid { at, .. }
            | SqlError::Unsupported { at, .. }
            | SqlError::Plan { at, .. } => *at,
        }
    }

    pub(crate) fn invalid(at: Position, message: impl Into<String>) -> Self {
        SqlError::Invalid {
            at,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(at: Position, message: impl Into<String>) -> Self {
        SqlError::Unsupported {
            at,
            message: message.into(),
        }
    }

    pub(crate) fn plan(at: Position, message: impl Into<String>) -> Self {
        SqlError::Plan {
            at,
            message: message.into(),
        }
    }

    /// A DataFusion error, at the place its diagnostic names or else at `fallback`.
    pub(crate) fn datafusion(e: datafusion::error::DataFusionError, fallback: Position) -> Self {
        let at = e
            .diagnostic()
            .and_then(|d| d.span)
            .map(|s| Position {
                line: s.start.line,
                column: s.start.column,
            })
            .filter(|p| p.line > 0)
            .unwrap_or(fallback);
        let message = e
            .diagnostic()
            .map(|d| d.message.clone())
            .unwrap_or_else(|| strip_context(&e.strip_backtrace()));
        SqlError::Invalid { at, message }
    }

    /// A parser error; sqlparser puts the place into the message.
    pub(crate) fn parser(e: sqlparser::parser::ParserError, fallback: Position) -> Self {
        let text = e.to_string();
        let text = text
            .strip_prefix("sql parser error: ")
            .unwrap_or(&text)
            .to_string();
        let (message, at) = match text.rfind(" at Line: ") {
            Some(i) => {
                let place = &text[i + " at Line: ".len()..];
                let mut parts = place.split(", Column: ");
                let line = parts.next().and_then(|l| l.trim().parse().ok());
                let column = parts.next().and_then(|c| c.trim().parse().ok());
                match (line, column) {
                    (Some(line), Some(column)) => {
                        (text[..i].to_string(), Position { line, column })
                    }
                    _ => (text.clone(), fallback),
                }
            }
            None => (text.clone(), fallback),
        };
        SqlError::Syntax { at, message }
    }
}

/// DataFusion's messages start with the kind of error ("Error during planning: ").
fn strip_context(text: &str) -> String {
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "Execution error: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text.to_string()
}
