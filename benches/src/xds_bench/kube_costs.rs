//! What one publish of the control plane's Kubernetes source costs at N pods, step by step, in
//! this process and with its public pieces (`control_plane::kube_source`): every watch event
//! parses one object into the store; each debounced batch then clones the store's objects, reads
//! the pods' nodes and translates the whole mesh (`kube_source::publish`). One sample.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use control_plane::kube_source::isolate::translate_isolating;
use control_plane::kube_source::store::{Change, Store};

use super::kube_mesh::ApiMesh;

/// The steps, each timed once over the whole mesh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Publish {
    /// `Store::apply` of every object once (one watch event each: parse).
    pub(crate) apply: Duration,
    /// `Store::objects`: the parsed objects cloned for the translation.
    pub(crate) objects: Duration,
    /// `watcher::pods_on_nodes` over them (the CA's view).
    pub(crate) pods_on_nodes: Duration,
    /// `isolate::translate_isolating` with the Kubernetes source's options.
    pub(crate) translate: Duration,
}

pub(crate) fn publish(mesh: &ApiMesh, workloads: usize) -> Result<Publish> {
    let listed = mesh.as_listed();
    let mut store = Store::default();
    let start = Instant::now();
    for (kind, object) in listed {
        store.apply(Change::Apply { kind, object });
    }
    let apply = start.elapsed();
    if let Some((key, _, error)) = store.rejected().next() {
        bail!("the store rejected {key}: {error}");
    }
    let start = Instant::now();
    let objects = store.objects();
    let cloned = start.elapsed();
    let start = Instant::now();
    let on_nodes = control_plane::watcher::pods_on_nodes(&objects);
    let pods_on_nodes = start.elapsed();
    drop(on_nodes);
    let options = control_plane::kube_source::options(Default::default());
    let start = Instant::now();
    let (translated, set_aside) = translate_isolating(objects, &options);
    let translate = start.elapsed();
    let translated = translated?;
    if translated.summary.workloads != workloads || !set_aside.is_empty() {
        bail!(
            "the store's translation holds {} of {workloads} workloads, {} objects set aside",
            translated.summary.workloads,
            set_aside.len()
        );
    }
    Ok(Publish {
        apply,
        objects: cloned,
        pods_on_nodes,
        translate,
    })
}
