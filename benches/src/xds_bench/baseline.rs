//! The baseline: the same workloads, Services and policies delivered without xDS, as the
//! local configuration file a ztunnel can read instead (`LOCAL_XDS_PATH`, spec §11). The
//! producer side serializes the domain types to JSON (valid YAML) and writes the file; the
//! consumer side is ztunnel's own loader (`ztunnel::local_config::load`: read, parse, validate).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prost::Message;
use xds::{Snapshot, type_url};
use ztunnel::local_config::{self, LocalConfig};
use ztunnel::model::Authorization;
use ztunnel::model::from_proto::AddressResource;

/// One round of writing and loading the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileRound {
    pub(crate) write: Duration,
    pub(crate) load: Duration,
    pub(crate) bytes: usize,
}

/// The node tunnels' snapshot as ztunnel's local configuration.
pub(crate) fn local_config(snapshot: &Snapshot) -> Result<LocalConfig> {
    let mut config = LocalConfig::default();
    for r in snapshot
        .resources(type_url::ADDRESS)
        .into_iter()
        .flat_map(|m| m.values())
    {
        let a = proto::istio::workload::Address::decode(r.body.value.as_slice())?;
        match AddressResource::try_from(a).with_context(|| r.name.clone())? {
            AddressResource::Workload(w) => config.workloads.push(w),
            AddressResource::Service(s) => config.services.push(s),
        }
    }
    for r in snapshot
        .resources(type_url::AUTHORIZATION)
        .into_iter()
        .flat_map(|m| m.values())
    {
        let p = proto::istio::security::Authorization::decode(r.body.value.as_slice())?;
        config
            .policies
            .push(Authorization::try_from(p).with_context(|| r.name.clone())?);
    }
    Ok(config)
}

/// Serializes and writes `config` to `path`, then loads it back as ztunnel does.
pub(crate) fn round(config: &LocalConfig, path: &Path) -> Result<FileRound> {
    let start = Instant::now();
    let text = serde_json::to_string(config)?;
    std::fs::write(path, &text)?;
    let write = start.elapsed();
    let start = Instant::now();
    let loaded = local_config::load(path)?;
    let load = start.elapsed();
    if loaded.workloads.len() != config.workloads.len() {
        bail!(
            "the local config lost workloads: {} of {}",
            loaded.workloads.len(),
            config.workloads.len()
        );
    }
    Ok(FileRound {
        write,
        load,
        bytes: text.len(),
    })
}
