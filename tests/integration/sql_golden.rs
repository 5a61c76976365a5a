//! SQL golden files: every `tests/sql/*.sql` runs through the real binary
//! (`headwater run`) at parallelism 1 and 3, and once more with checkpoints,
//! killed after its first commit and restarted. All runs must give the rows
//! in `<case>.out`, and, unless the script says `-- no-oracle`, the rows
//! DataFusion gives running the same script as a batch query (or, where a
//! `<case>.oracle` script is there, that script: DataFusion cannot run a
//! temporal join, so its oracle says the same in plain SQL).
//! `tests/sql/errors/*.sql` must fail before the job starts, with the message
//! in `<case>.err`. Set `HW_BLESS=1` to write the expected files anew.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::committed_rows;

fn sql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    cases
}

fn bless() -> bool {
    std::env::var_os("HW_BLESS").is_some()
}

/// The script with its data and output directories filled in.
fn script(case: &Path, out: &Path) -> String {
    std::fs::read_to_string(case)
        .unwrap()
        .replace("${DATA}", &sql_dir().join("data").display().to_string())
        .replace("${OUT}", &out.display().to_string())
}

fn headwater(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the headwater binary runs")
}

/// The result a changelog (JSON lines with `_change`) leaves: `+I`/`+U` rows
/// added, `-U`/`-D` rows taken away, as a view applies them. Sorted, keys
/// in name order.
fn fold_changelog(lines: &str) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    for line in lines.lines().filter(|l| l.starts_with('{')) {
        let mut row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("`{line}`: {e}"));
        let change = row.remove("_change").expect("a changelog row has _change");
        let delta = match change.as_str() {
            Some("+I") | Some("+U") => 1,
            Some("-U") | Some("-D") => -1,
            other => panic!("unknown change {other:?}"),
        };
        *counts
            .entry(serde_json::Value::Object(row).to_string())
            .or_default() += delta;
    }
    let mut rows = Vec::new();
    for (row, count) in counts {
        assert!(count >= 0, "{row} was retracted more often than inserted");
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    rows
}

/// Rows with their keys in name order, as [`fold_changelog`] writes them.
fn normalized(rows: Vec<String>) -> Vec<String> {
    let mut rows: Vec<String> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r)
                .unwrap()
                .to_string()
        })
        .collect();
    rows.sort();
    rows
}

/// Runs the case at `parallelism`; returns its committed rows (or, for a
/// `print` sink, the result of its changelog), sorted.
fn run(case: &Path, parallelism: usize, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("job.sql");
    std::fs::write(&path, script(case, &out)).unwrap();
    let p = parallelism.to_string();
    let state = dir.path().join("state").display().to_string();
    let mut args = vec!["run", "job.sql", "--parallelism", &p, "--state-dir", &state];
    args.extend_from_slice(extra);
    let output = headwater(&args, dir.path());
    assert!(
        output.status.success(),
        "{} at parallelism {parallelism} failed:\n{}",
        case.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    if std::fs::read_to_string(case).unwrap().contains("${OUT}") {
        normalized(committed_rows(&out))
    } else {
        fold_changelog(&String::from_utf8_lossy(&output.stdout))
    }
}

/// Runs the case at parallelism 2 with checkpoints, its input paced so that
/// it runs for about a second; kills it (SIGKILL) once it has committed
/// rows, restarts it over its checkpoints, and returns what it committed.
fn run_with_a_crash(case: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let paced = script(case, &out).replace(
        &format!("'path' = '{}", sql_dir().join("data").display()),
        &format!(
            "'rows-per-second' = '3000', 'path' = '{}",
            sql_dir().join("data").display()
        ),
    );
    std::fs::write(dir.path().join("job.sql"), paced).unwrap();
    let state = dir.path().join("state").display().to_string();
    let args = [
        "run",
        "job.sql",
        "--parallelism",
        "2",
        "--checkpoint-dir",
        "checkpoints",
        "--checkpoint-interval",
        "100ms",
        "--state-dir",
        &state,
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut killed = false;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let committed = dir
            .path()
            .join("checkpoints")
            .read_dir()
            .is_ok_and(|mut d| {
                d.any(|e| {
                    e.is_ok_and(|e| {
                        e.file_name().to_string_lossy().starts_with("chk-")
                            && e.path().join("_metadata").exists()
                    })
                })
            });
        if committed {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.wait();
    assert!(
        killed,
        "{}: the job ended before its first checkpoint",
        case.display()
    );
    let before = committed_rows(&out).len();
    let output = headwater(&args, dir.path());
    assert!(
        output.status.success(),
        "{}: the restart failed:\n{}",
        case.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = normalized(committed_rows(&out));
    println!(
        "  killed after {before} of {} rows were committed",
        rows.len()
    );
    rows
}

/// The same script as a DataFusion batch query (or `<case>.oracle`), its
/// rows as the sink writes them.
fn oracle(case: &Path) -> Vec<String> {
    let own = case.with_extension("oracle");
    let text = script(
        if own.exists() { &own } else { case },
        Path::new("/nonexistent"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let results = rt
        .block_on(headwater::sql::batch::run_batch(&text))
        .unwrap_or_else(|e| panic!("{}: the batch query failed: {e}", case.display()));
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buffer);
        for batch in results.get("out").into_iter().flatten() {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
    }
    normalized(
        String::from_utf8(buffer)
            .unwrap()
            .lines()
            .map(String::from)
            .collect(),
    )
}

#[test]
fn golden_queries() {
    for case in cases(&sql_dir()) {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let rows = run(&case, 1, &[]);
        assert!(!rows.is_empty(), "{name}: no rows");
        let expected_path = case.with_extension("out");
        if bless() {
            std::fs::write(&expected_path, rows.join("\n") + "\n").unwrap();
        }
        let expected: Vec<String> = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| {
                panic!(
                    "{name}: no {}; run with HW_BLESS=1",
                    expected_path.display()
                )
            })
            .lines()
            .map(String::from)
            .collect();
        assert!(
            rows == expected,
            "{name}: the rows differ from {}",
            expected_path.display()
        );
        let text = std::fs::read_to_string(&case).unwrap();
        if !text.contains("-- parallelism: 1") {
            let at_3 = run(&case, 3, &[]);
            assert!(
                at_3 == rows,
                "{name}: parallelism 3 gives other rows than parallelism 1"
            );
        }
        if !text.contains("-- no-oracle") {
            let batch = oracle(&case);
            assert_eq!(
                batch.len(),
                rows.len(),
                "{name}: row count differs from the batch query"
            );
            assert!(
                batch == rows,
                "{name}: the rows differ from the batch query"
            );
        }
        if text.contains("${OUT}") && !text.contains("-- parallelism: 1") {
            let restarted = run_with_a_crash(&case);
            assert!(
                restarted == rows,
                "{name}: killed and restarted from its checkpoint, other rows"
            );
        }
        println!("{name}: {} rows", rows.len());
    }
}

#[test]
fn golden_errors() {
    let dir = sql_dir().join("errors");
    for case in cases(&dir) {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let output = headwater(&["run", &name], &dir);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name} must fail before the job starts"
        );
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let expected_path = case.with_extension("err");
        if bless() {
            std::fs::write(&expected_path, format!("{stderr}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{name}: no {}; run with HW_BLESS=1",
                expected_path.display()
            )
        });
        assert_eq!(stderr, expected.trim(), "{name}");
    }
}
