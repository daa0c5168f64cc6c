//! Feeds the store from the local configuration (spec §11): inline YAML once, or a file that
//! is re-read whenever it changes (polled every 250 ms). A bad file is logged and the last good
//! configuration stays in force. xDS (`XDS_ADDRESS`) is the other source: see `xds_source`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::ConfigSource;
use crate::local_config::{self, LocalConfig, LocalConfigError};
use crate::state::Store;

const POLL: Duration = Duration::from_millis(250);

fn apply(store: &Store, config: LocalConfig) {
    store.replace(config.workloads, config.services, config.policies);
}

/// Loads the initial configuration (failing start-up if it is bad) and returns the watcher to
/// spawn, if the source is a file.
pub fn start(
    source: &ConfigSource,
    store: &Store,
) -> Result<Option<FileWatcher>, LocalConfigError> {
    match source {
        ConfigSource::Inline(yaml) => {
            apply(store, LocalConfig::from_yaml(yaml, "LOCAL_XDS")?);
            Ok(None)
        }
        ConfigSource::Xds(_) => Ok(None),
        ConfigSource::File(path) => {
            let stamp = stamp(path);
            apply(store, local_config::load(path)?);
            Ok(Some(FileWatcher {
                path: path.clone(),
                store: store.clone(),
                last: stamp,
            }))
        }
    }
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Re-reads the file when its mtime, size or inode changes.
pub struct FileWatcher {
    path: PathBuf,
    store: Store,
    last: Option<(SystemTime, u64, u64)>,
}

impl FileWatcher {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = stamp(&self.path);
            if now == self.last {
                continue;
            }
            self.last = now;
            match local_config::load(&self.path) {
                Ok(config) => {
                    tracing::info!(path = %self.path.display(), "local configuration changed; applying");
                    apply(&self.store, config);
                }
                Err(e) => {
                    tracing::error!(error = %e, "local configuration rejected; keeping the last good one")
                }
            }
        }
    }
}
