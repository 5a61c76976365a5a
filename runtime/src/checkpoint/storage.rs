//! Checkpoint storage: a directory, local by default.
//!
//! ```text
//! <root>/shared/<operator>/<store instance>/<n>.sst   immutable SST files, each copied once
//! <root>/chk-<id>/<operator>/<subtask>/state          an operator's own state
//! <root>/chk-<id>/<operator>/<subtask>/store/...      a RocksDB snapshot's other files
//! <root>/chk-<id>/_metadata                           written last: the checkpoint is complete
//! <root>/savepoint-<id>/...                           the same, kept until the user removes it
//! ```
//!
//! SST files never change once written, so a checkpoint copies only the SST
//! files the previous ones did not: snapshots are incremental. A checkpoint is
//! complete only when its `_metadata` exists, parses, and every file it names
//! is present with its recorded size.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::metadata::{CheckpointMetadata, METADATA_FORMAT, StateFile, StoreFiles};
use crate::error::RuntimeError;

const METADATA: &str = "_metadata";

/// A checkpoint directory.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    root: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let parent = path.parent().expect("a file in a directory");
    fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Copies `from` to `to` (through a temporary file, so `to` is whole or absent).
fn copy_file(from: &Path, to: &Path) -> Result<u64, RuntimeError> {
    let parent = to.parent().expect("a file in a directory");
    fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let tmp = to.with_extension(COPYING);
    let copied = fs::copy(from, &tmp)
        .map_err(|e| io(from, e))
        .and_then(|size| {
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&tmp, e))?;
            fs::rename(&tmp, to).map_err(|e| io(to, e))?;
            Ok(size)
        });
    if copied.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    copied
}

/// The extension of a file being copied into checkpoint storage.
const COPYING: &str = "copying";

fn checkpoint_id(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

impl CheckpointStorage {
    /// The storage under `root`. Files left half-copied by a process that
    /// died during an upload are removed: no upload is running yet.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        for file in walk_all(&root.join("shared")) {
            if file.extension().is_some_and(|e| e == COPYING) {
                let _ = fs::remove_file(&file);
            }
        }
        Ok(CheckpointStorage { root })
    }

    /// The storage holding a checkpoint or savepoint directory.
    pub fn of_checkpoint(dir: &Path) -> Result<Self, RuntimeError> {
        let root = dir.parent().ok_or_else(|| {
            RuntimeError::Checkpoint(format!("{}: not a checkpoint directory", dir.display()))
        })?;
        Ok(CheckpointStorage {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of checkpoint (or savepoint) `id`.
    pub fn checkpoint_dir(&self, id: u64, savepoint: bool) -> PathBuf {
        let kind = if savepoint { "savepoint" } else { "chk" };
        self.root.join(format!("{kind}-{id}"))
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    fn file(&self, path: &Path, size: u64) -> StateFile {
        StateFile {
            path: self.relative(path),
            size,
        }
    }

    fn subtask_dir(&self, id: u64, savepoint: bool, operator: &str, subtask: usize) -> PathBuf {
        self.checkpoint_dir(id, savepoint)
            .join(sanitize(operator))
            .join(subtask.to_string())
    }

    /// Stores an operator's own state for a checkpoint.
    pub fn write_operator_state(
        &self,
        id: u64,
        savepoint: bool,
        operator: &str,
        subtask: usize,
        bytes: &[u8],
    ) -> Result<StateFile, RuntimeError> {
        let path = self
            .subtask_dir(id, savepoint, operator, subtask)
            .join("state");
        write_atomically(&path, bytes)?;
        Ok(self.file(&path, bytes.len() as u64))
    }

    /// Copies a local RocksDB snapshot (a directory of hard links) into the
    /// checkpoint: SST files into the shared directory unless already there,
    /// the rest into the checkpoint's own directory. A savepoint copies
    /// everything into its own directory, so it stands alone.
    pub fn upload_store(
        &self,
        id: u64,
        savepoint: bool,
        operator: &str,
        subtask: usize,
        instance: &str,
        local: &Path,
    ) -> Result<StoreFiles, RuntimeError> {
        let own = self
            .subtask_dir(id, savepoint, operator, subtask)
            .join("store");
        let shared = self
            .root
            .join("shared")
            .join(sanitize(operator))
            .join(instance);
        let mut files = StoreFiles {
            shared: Vec::new(),
            private: Vec::new(),
        };
        let entries = fs::read_dir(local).map_err(|e| io(local, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(local, e))?;
            let name = entry.file_name();
            let from = entry.path();
            let is_sst = name.to_string_lossy().ends_with(".sst");
            if is_sst && !savepoint {
                let to = shared.join(&name);
                let size = match fs::metadata(&to) {
                    Ok(m) => m.len(),
                    Err(_) => copy_file(&from, &to)?,
                };
                files.shared.push(self.file(&to, size));
            } else {
                let to = own.join(&name);
                let size = copy_file(&from, &to)?;
                files.private.push(self.file(&to, size));
            }
        }
        files.shared.sort_by(|a, b| a.path.cmp(&b.path));
        files.private.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Makes checkpoint `metadata.id` complete: writes its metadata atomically.
    pub fn complete(&self, metadata: &CheckpointMetadata) -> Result<PathBuf, RuntimeError> {
        let dir = self.checkpoint_dir(metadata.id, metadata.savepoint);
        let json = serde_json::to_vec_pretty(metadata)
            .map_err(|e| RuntimeError::Checkpoint(format!("encoding metadata: {e}")))?;
        write_atomically(&dir.join(METADATA), &json)?;
        Ok(dir)
    }

    /// Reads and checks the metadata of a checkpoint directory: it parses, and
    /// every file it names exists with its size.
    pub fn load(&self, dir: &Path) -> Result<CheckpointMetadata, RuntimeError> {
        let path = dir.join(METADATA);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        let metadata: CheckpointMetadata = serde_json::from_slice(&bytes).map_err(|e| {
            RuntimeError::Checkpoint(format!("{}: corrupt metadata: {e}", path.display()))
        })?;
        if metadata.format != METADATA_FORMAT {
            return Err(RuntimeError::Checkpoint(format!(
                "{}: metadata format {} (this version reads {METADATA_FORMAT})",
                path.display(),
                metadata.format
            )));
        }
        for file in metadata.files() {
            let full = self.root.join(&file.path);
            match fs::metadata(&full) {
                Ok(m) if m.len() == file.size => {}
                Ok(m) => {
                    return Err(RuntimeError::Checkpoint(format!(
                        "{}: {} has {} bytes, the checkpoint recorded {}",
                        dir.display(),
                        full.display(),
                        m.len(),
                        file.size
                    )));
                }
                Err(e) => {
                    return Err(RuntimeError::Checkpoint(format!(
                        "{}: {} is missing: {e}",
                        dir.display(),
                        full.display()
                    )));
                }
            }
        }
        Ok(metadata)
    }

    /// Completed checkpoints, newest first (directories only; not yet checked).
    fn checkpoint_dirs(&self) -> Vec<(u64, PathBuf)> {
        let mut dirs: Vec<(u64, PathBuf)> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((checkpoint_id(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        dirs
    }

    /// The newest complete checkpoint. A checkpoint whose metadata is missing
    /// (unfinished) is passed over; one whose metadata is corrupt or whose
    /// files are missing is passed over with a warning naming the problem.
    pub fn latest(&self) -> Option<(PathBuf, CheckpointMetadata)> {
        for (_, dir) in self.checkpoint_dirs() {
            if !dir.join(METADATA).exists() {
                continue;
            }
            match self.load(&dir) {
                Ok(metadata) => return Some((dir, metadata)),
                Err(e) => tracing::warn!("skipping checkpoint: {e}; trying an older one"),
            }
        }
        None
    }

    /// The largest checkpoint id used so far, complete or not.
    pub fn last_id(&self) -> u64 {
        self.checkpoint_dirs().first().map_or(0, |(id, _)| *id).max(
            fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_prefix("savepoint-")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0),
        )
    }

    /// Keeps the newest `retained` complete checkpoints, removes older and
    /// unfinished ones, and removes shared files no kept checkpoint or
    /// savepoint names.
    pub fn retain(&self, retained: usize) -> Result<(), RuntimeError> {
        let mut kept = 0;
        let mut referenced: HashSet<String> = HashSet::new();
        let newest_complete = self
            .checkpoint_dirs()
            .into_iter()
            .find(|(_, d)| d.join(METADATA).exists())
            .map_or(0, |(id, _)| id);
        for (id, dir) in self.checkpoint_dirs() {
            let keep = match self.load(&dir) {
                Ok(metadata) if kept < retained.max(1) => {
                    kept += 1;
                    referenced.extend(metadata.files().map(|f| f.path.clone()));
                    true
                }
                // Unfinished ones newer than the newest complete may be in flight.
                Err(_) if id > newest_complete => true,
                _ => false,
            };
            if !keep {
                fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        for entry in fs::read_dir(&self.root)
            .map_err(|e| io(&self.root, e))?
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("savepoint-")
                && let Ok(metadata) = self.load(&entry.path())
            {
                referenced.extend(metadata.files().map(|f| f.path.clone()));
            }
        }
        let shared = self.root.join("shared");
        for file in walk(&shared) {
            if !referenced.contains(&self.relative(&file)) {
                fs::remove_file(&file).map_err(|e| io(&file, e))?;
            }
        }
        Ok(())
    }

    /// Copies the files of one subtask's keyed state into `target` (hard links where possible).
    pub fn materialize(&self, files: &StoreFiles, target: &Path) -> Result<(), RuntimeError> {
        fs::create_dir_all(target).map_err(|e| io(target, e))?;
        for file in files.shared.iter().chain(&files.private) {
            let from = self.root.join(&file.path);
            let name = from.file_name().expect("a file name");
            let to = target.join(name);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(|e| io(&from, e))?;
            }
        }
        Ok(())
    }

    /// Reads an operator state file.
    pub fn read(&self, file: &StateFile) -> Result<Vec<u8>, RuntimeError> {
        let path = self.root.join(&file.path);
        fs::read(&path).map_err(|e| io(&path, e))
    }
}

/// Every file under `dir` but those being copied.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = walk_all(dir);
    files.retain(|f| f.extension().is_none_or(|e| e != COPYING));
    files
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// An operator name as one directory name, one-to-one: letters, digits and
/// `-` stay, `_` doubles, and any other character becomes `_` and its code in
/// hex (`insert:out/window` is `insert_3a_out_2f_window`). Two operators never
/// share a directory, and no name reaches outside it.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || c == '-' => out.push(c),
            '_' => out.push_str("__"),
            c => out.push_str(&format!("_{:x}_", c as u32)),
        }
    }
    if out.is_empty() {
        out.push_str("_empty_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn operator_names_map_to_distinct_plain_directory_names() {
        let names = [
            "insert:out/window",
            "insert_3a_out_2f_window",
            "insert_out_window",
            "a_b",
            "a__b",
            "a/b",
            "..",
            "",
            "_empty_",
            "vue_é",
        ];
        let dirs: Vec<String> = names.iter().map(|n| sanitize(n)).collect();
        for (i, d) in dirs.iter().enumerate() {
            assert!(
                d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{d}"
            );
            for (j, other) in dirs.iter().enumerate() {
                assert!(
                    i == j || d != other,
                    "`{}` and `{}` share {d}",
                    names[i],
                    names[j]
                );
            }
        }
        assert_eq!(sanitize("insert:out/window"), "insert_3a_out_2f_window");
    }
}
