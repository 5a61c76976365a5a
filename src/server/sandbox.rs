//! What a network client may name: `headwater serve` runs statements from
//! anyone who can connect, so the files they read and write (a table's
//! `path`, `decode-error.path`, any option naming a file or directory) must
//! lie under a directory the operator allowed with `--allow-path`. None is
//! allowed by default. Names of tables and views are identifiers, never paths.

use std::path::{Component, Path, PathBuf};

use headwater_sql::script::read_script;

use super::engine::StatementError;

/// The directories clients' statements may name files under.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    allowed: Vec<PathBuf>,
}

impl Sandbox {
    /// Allows `dirs` (made absolute, their links resolved).
    pub fn new(dirs: &[PathBuf]) -> std::io::Result<Self> {
        let allowed = dirs
            .iter()
            .map(|d| std::fs::canonicalize(d))
            .collect::<std::io::Result<_>>()?;
        Ok(Sandbox { allowed })
    }

    /// Refuses (42501) a statement that names a file outside the allowed
    /// directories; the message names the option, not what the file holds.
    pub fn check(&self, statement: &str) -> Result<(), StatementError> {
        let Ok(statements) = read_script(statement) else {
            return Ok(()); // Not a statement: the planner says why.
        };
        for s in statements {
            for (key, value) in &s.options {
                if runs_code(key) {
                    return Err(StatementError::new(
                        "42501",
                        format!(
                            "option '{key}' loads or runs programs on the server: clients may not set it"
                        ),
                    ));
                }
                if names_a_file(key) && !self.allows(Path::new(&value.value)) {
                    return Err(StatementError::new(
                        "42501",
                        format!(
                            "option '{key}' names a file outside the directories this server allows (start it with --allow-path DIR)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `path` lies under an allowed directory, after every link in
    /// the part of it that exists is resolved. A path with `..` never does.
    pub fn allows(&self, path: &Path) -> bool {
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return false;
        }
        let Ok(cwd) = std::env::current_dir() else {
            return false;
        };
        let absolute = cwd.join(path);
        // The longest part that exists, resolved; the rest as written.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(existing) {
                Ok(resolved) => break resolved,
                Err(_) => match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        existing = parent;
                    }
                    _ => return false,
                },
            }
        };
        let full = rest.iter().rev().fold(resolved, |p, name| p.join(name));
        self.allowed.iter().any(|dir| full.starts_with(dir))
    }
}

/// Whether an option's value is a file or directory (librdkafka's
/// `ssl.*.location` and `sasl.kerberos.keytab` among them).
fn names_a_file(key: &str) -> bool {
    let last = key.rsplit(['.', '-']).next().unwrap_or(key);
    matches!(
        last,
        "path" | "dir" | "directory" | "file" | "filename" | "location" | "keytab"
    )
}

/// librdkafka settings that load a library or run a command on the server.
fn runs_code(key: &str) -> bool {
    let setting = key.strip_prefix("properties.").unwrap_or(key);
    matches!(
        setting,
        "plugin.library.paths"
            | "ssl.engine.location"
            | "ssl.providers"
            | "sasl.kerberos.kinit.cmd"
    )
}

/// Checks a name a client gave a table or view: an identifier (letters,
/// digits, `_`, `$`; not starting with a digit), at most 63 bytes, as
/// Postgres takes it. A quoted name keeps its case, an unquoted one was
/// folded to lower case already.
pub fn check_name(name: &str) -> Result<(), StatementError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(StatementError::new(
            "42602",
            format!(
                "invalid name \"{}\": a name is a letter or _ and then letters, digits, _ or $ (at most 63 bytes)",
                name.escape_default()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_allowed_directories_pass() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(&[allowed.path().to_path_buf()]).unwrap();
        assert!(sandbox.allows(&allowed.path().join("events.jsonl")));
        assert!(sandbox.allows(&allowed.path().join("new/dir/out")));
        assert!(!sandbox.allows(Path::new("/etc/passwd")));
        assert!(!sandbox.allows(&allowed.path().join("../x")));
        // A link inside the allowed directory that leads out of it.
        std::os::unix::fs::symlink(outside.path(), allowed.path().join("link")).unwrap();
        assert!(!sandbox.allows(&allowed.path().join("link/secret")));
        assert!(!Sandbox::default().allows(&allowed.path().join("x")));
    }

    #[test]
    fn statements_naming_files_elsewhere_are_refused() {
        let allowed = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(&[allowed.path().to_path_buf()]).unwrap();
        let inside = format!(
            "CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = '{}/t.jsonl')",
            allowed.path().display()
        );
        assert!(sandbox.check(&inside).is_ok());
        let e = sandbox
            .check(
                "CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = '/etc/passwd')",
            )
            .unwrap_err();
        assert_eq!(e.code, "42501");
        assert!(!e.message.contains("root"));
        let dlq = format!(
            "CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = '{}/t.jsonl', 'decode-error' = 'dlq', 'decode-error.path' = '/tmp')",
            allowed.path().display()
        );
        assert_eq!(sandbox.check(&dlq).unwrap_err().code, "42501");
        for option in [
            "'properties.ssl.ca.location' = '/etc/ssl/private/key.pem'",
            "'properties.sasl.kerberos.keytab' = '/etc/krb5.keytab'",
            "'properties.plugin.library.paths' = 'libevil'",
            "'properties.sasl.kerberos.kinit.cmd' = 'rm -rf /'",
        ] {
            let kafka = format!(
                "CREATE TABLE k (a INT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json', {option})"
            );
            assert_eq!(sandbox.check(&kafka).unwrap_err().code, "42501", "{option}");
        }
    }

    #[test]
    fn names_are_identifiers() {
        assert!(check_name("orders_per_minute").is_ok());
        assert!(check_name("Totals$2").is_ok());
        for bad in [
            "/home/u/project",
            "a.b",
            "",
            "1a",
            "a b",
            "../x",
            &"x".repeat(64),
        ] {
            assert_eq!(check_name(bad).unwrap_err().code, "42602", "{bad}");
        }
    }
}
