//! Follows the manifest directory: re-reads it when any file's mtime, size or inode changes (or a
//! file appears or goes), translates, and publishes. A bad manifest is reported (log, status,
//! metric) and the last good configuration keeps being served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use crate::ca::PodsOnNodes;
use crate::manifest::{self, ManifestObject, Object, PodExt, PodSpecExt};
use crate::source::MeshSource;
use crate::translate::{Options, translate};

const POLL: Duration = Duration::from_millis(100);

/// What the last attempt did, for `/debug/status` and `meshctl`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Generations applied so far (0: nothing yet).
    pub generation: u64,
    pub objects: usize,
    /// The error of the last attempt, when it failed (the previous generation is still served).
    pub error: Option<String>,
    /// Milliseconds the last successful read + translation took.
    pub translate_ms: f64,
    pub summary: serde_json::Value,
    /// Objects that are not applied (a Kubernetes source applies everything else), with their errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<crate::kube_source::report::Rejected>,
}

type Stamp = Vec<(PathBuf, SystemTime, u64, u64)>;

fn stamp(dir: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(p);
            } else if let Ok(t) = m.modified() {
                out.push((p, t, m.len(), m.ino()));
            }
        }
    }
    out.sort();
    out
}

/// Reads and translates the directory once.
pub fn load(
    dir: &Path,
    options: &Options,
) -> Result<(Vec<ManifestObject>, crate::translate::Translation), String> {
    let files = if stamp(dir).is_empty() {
        Vec::new()
    } else {
        manifest::read_path(dir).map_err(|e| e.to_string())?
    };
    let objects = manifest::parse_files(&files).map_err(|e| e.to_string())?;
    let translation = translate(&objects, options).map_err(|e| e.to_string())?;
    Ok((objects, translation))
}

/// `(node, namespace, service account)` of pods with a node.
pub fn pods_on_nodes(
    objects: &[ManifestObject],
) -> std::collections::BTreeSet<(String, String, String)> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::Pod(p) => Some((
                p.pod_spec().node_name.clone()?,
                p.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                p.pod_spec().service_account().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// The loop: polls `dir` until shutdown.
pub async fn run(
    dir: PathBuf,
    options: Options,
    source: Arc<MeshSource>,
    pods: PodsOnNodes,
    status: watch::Sender<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<Stamp> = None;
    loop {
        let now = stamp(&dir);
        if last.as_ref() != Some(&now) {
            last = Some(now);
            let started = Instant::now();
            // Reading and translating is CPU work: off the async workers, which keep serving xDS.
            let loaded = {
                let (dir, options) = (dir.clone(), options.clone());
                tokio::task::spawn_blocking(move || load(&dir, &options))
                    .await
                    .unwrap_or_else(|e| Err(format!("translation task failed: {e}")))
            };
            match loaded {
                Ok((objects, translation)) => {
                    let summary = serde_json::to_value(&translation.summary).unwrap_or_default();
                    *pods.write().unwrap_or_else(|e| e.into_inner()) = pods_on_nodes(&objects);
                    source.publish(translation);
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    status.send_modify(|s| {
                        s.generation += 1;
                        s.objects = objects.len();
                        s.error = None;
                        s.translate_ms = ms;
                        s.summary = summary.clone();
                    });
                    tracing::info!(dir = %dir.display(), objects = objects.len(), ms, %summary, "manifests applied");
                }
                Err(error) => {
                    tracing::error!(dir = %dir.display(), %error, "manifests rejected; the last good configuration stays");
                    status.send_modify(|s| s.error = Some(error));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
