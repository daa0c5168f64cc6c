//! Installs the plugin on the node: the binary into the CNI bin dir and our entry into the primary CNI
//! configuration, both written atomically (a temp file in the same directory whose name does not end in
//! `.conf`/`.conflist`/`.json`, fsynced, then renamed). [`Installer::ensure`] is called on every poll tick, so an
//! entry or binary removed by another writer is put back within one tick.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::conflist::{self, ConfListError, PLUGIN_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    ConfList(#[from] ConfListError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.into(),
        source,
    }
}

/// What [`Installer::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ensured {
    pub binary_installed: bool,
    pub conf_written: bool,
    /// No primary configuration exists yet (the primary CNI is not installed).
    pub no_primary: bool,
}

#[derive(Debug, Clone)]
pub struct Installer {
    pub conf_dir: PathBuf,
    /// Use this file instead of the lexically first one.
    pub conf_name: Option<String>,
    pub bin_dir: PathBuf,
    pub plugin_binary: PathBuf,
    pub entry: Value,
}

impl Installer {
    /// Puts the binary and the entry in place when they are missing or different.
    pub fn ensure(&self) -> Result<Ensured, InstallError> {
        let mut done = Ensured {
            binary_installed: self.ensure_binary()?,
            ..Ensured::default()
        };
        match self.primary()? {
            None => done.no_primary = true,
            Some(file) => {
                let value = read_json(&file)?;
                if let Some(edit) = conflist::insert_entry(&file, &value, &self.entry)? {
                    atomic_write(&edit.path, &pretty(&edit.content))?;
                    if let Some(old) = edit.remove {
                        remove_if_exists(&old)?;
                    }
                    done.conf_written = true;
                }
            }
        }
        Ok(done)
    }

    /// Removes our entry from the primary configuration (clean shutdown with `--remove-on-shutdown`).
    pub fn remove_entry(&self) -> Result<bool, InstallError> {
        let Some(file) = self.primary()? else {
            return Ok(false);
        };
        let value = read_json(&file)?;
        match conflist::remove_entry(&file, &value) {
            Some(edit) => atomic_write(&edit.path, &pretty(&edit.content)).map(|_| true),
            None => Ok(false),
        }
    }

    /// The primary configuration file, if any.
    pub fn primary(&self) -> Result<Option<PathBuf>, InstallError> {
        let names: Vec<String> = std::fs::read_dir(&self.conf_dir)
            .map_err(io(&self.conf_dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        Ok(conflist::primary(&names, self.conf_name.as_deref()).map(|n| self.conf_dir.join(n)))
    }

    fn ensure_binary(&self) -> Result<bool, InstallError> {
        let target = self.bin_dir.join(PLUGIN_TYPE);
        // Cheap check on every tick: present with the source's size (a full compare would read the binary
        // ten times a second).
        let src_len = std::fs::metadata(&self.plugin_binary)
            .map_err(io(&self.plugin_binary))?
            .len();
        if std::fs::metadata(&target).is_ok_and(|m| m.len() == src_len) {
            return Ok(false);
        }
        let src = std::fs::read(&self.plugin_binary).map_err(io(&self.plugin_binary))?;
        std::fs::create_dir_all(&self.bin_dir).map_err(io(&self.bin_dir))?;
        atomic_write_mode(&target, &src, 0o755)?;
        tracing::info!(path = %target.display(), "installed the istio-cni plugin binary");
        Ok(true)
    }
}

fn read_json(path: &Path) -> Result<Value, InstallError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|source| InstallError::Json {
        path: path.into(),
        source,
    })
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn remove_if_exists(path: &Path) -> Result<(), InstallError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Writes `data` to `path` atomically (temp file in the same directory + fsync + rename).
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), InstallError> {
    atomic_write_mode(path, data, 0o644)
}

fn atomic_write_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn installs_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&conf).unwrap();
        let src = dir.path().join("plugin");
        std::fs::write(&src, b"#!binary").unwrap();
        let inst = Installer {
            conf_dir: conf.clone(),
            conf_name: None,
            bin_dir: bin.clone(),
            plugin_binary: src,
            entry: json!({"type": "istio-cni", "name": "istio-cni"}),
        };
        let first = inst.ensure().unwrap();
        assert!(first.binary_installed && first.no_primary);
        let mode = std::fs::metadata(bin.join("istio-cni"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::write(
            conf.join("10-net.conf"),
            r#"{"cniVersion":"1.0.0","name":"net","type":"bridge"}"#,
        )
        .unwrap();
        let second = inst.ensure().unwrap();
        assert!(second.conf_written && !second.binary_installed);
        assert!(!conf.join("10-net.conf").exists());
        let list: Value = read_json(&conf.join("10-net.conflist")).unwrap();
        assert!(conflist::has_entry(&list, &inst.entry));
        assert_eq!(inst.ensure().unwrap(), Ensured::default());
        assert!(inst.remove_entry().unwrap());
        let list: Value = read_json(&conf.join("10-net.conflist")).unwrap();
        assert_eq!(list["plugins"].as_array().unwrap().len(), 1);
        // Only the final files remain (no temp files).
        let names: Vec<_> = std::fs::read_dir(&conf)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
