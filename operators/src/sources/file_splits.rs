//! Splitting files into byte ranges, so that one large file is read by many subtasks.
//!
//! A line belongs to the range it starts in. A reader of range `[start, end)`
//! skips the partial line at `start` (its owner is the range before) and reads
//! on past `end` to finish its last line.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::OperatorError;

/// Ranges smaller than this are not split further: the overhead would outweigh the gain.
const MIN_SPLIT_BYTES: u64 = 1 << 20;

/// A byte range of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSplit {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

/// Lists the files under `path` (itself, if a file), sorted by name, skipping
/// hidden files and files starting with `_` (such as in-progress sink output).
pub fn list_files(path: &Path) -> Result<Vec<(PathBuf, u64)>, OperatorError> {
    let meta = fs::metadata(path).map_err(|e| OperatorError::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![(path.to_path_buf(), meta.len())]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| OperatorError::io(path, e))? {
        let entry = entry.map_err(|e| OperatorError::io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| OperatorError::io(entry.path(), e))?;
        if meta.is_file() {
            files.push((entry.path(), meta.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// The splits subtask `index` of `parallelism` reads: every file is cut into
/// up to `parallelism` ranges, and the ranges are dealt out in turn.
pub fn splits_for_subtask(
    files: &[(PathBuf, u64)],
    parallelism: usize,
    index: usize,
) -> Vec<FileSplit> {
    let mut all = Vec::new();
    for (path, len) in files {
        let pieces = (len / MIN_SPLIT_BYTES).clamp(1, parallelism as u64);
        for k in 0..pieces {
            all.push(FileSplit {
                path: path.clone(),
                start: len * k / pieces,
                end: len * (k + 1) / pieces,
            });
        }
    }
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % parallelism == index)
        .map(|(_, s)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_shared_and_small_files_are_dealt() {
        let files = vec![
            (PathBuf::from("big"), 10 * MIN_SPLIT_BYTES),
            (PathBuf::from("small"), 10),
        ];
        let s0 = splits_for_subtask(&files, 3, 0);
        let s1 = splits_for_subtask(&files, 3, 1);
        let s2 = splits_for_subtask(&files, 3, 2);
        assert_eq!(s0.len() + s1.len() + s2.len(), 4);
        let mut big: Vec<_> = [&s0, &s1, &s2]
            .iter()
            .flat_map(|s| s.iter())
            .filter(|s| s.path == Path::new("big"))
            .cloned()
            .collect();
        big.sort_by_key(|s| s.start);
        assert_eq!(big.first().unwrap().start, 0);
        assert_eq!(big.last().unwrap().end, 10 * MIN_SPLIT_BYTES);
        assert!(big.windows(2).all(|w| w[0].end == w[1].start));
    }
}
