//! Filling the metric labels of a connection from the workloads involved (spec §9 "Where the
//! values come from").

use hbone::Identity;

use crate::model::{Service, Workload};
use crate::telemetry::{CommonTrafficLabels, Reporter, SecurityPolicy};

/// `source_*` / `destination_*` labels for one connection.
pub struct Peers<'a> {
    pub reporter: Reporter,
    pub src: Option<&'a Workload>,
    /// The source's verified identity (inbound mTLS) or own identity (outbound).
    pub src_identity: Option<&'a Identity>,
    pub dst: Option<&'a Workload>,
    pub dst_identity: Option<&'a Identity>,
    pub service: Option<&'a Service>,
    pub mtls: bool,
}

fn principal(id: Option<&Identity>) -> String {
    id.map(|i| i.to_uri()).unwrap_or_default()
}

impl Peers<'_> {
    pub fn labels(&self) -> CommonTrafficLabels {
        let mut l = CommonTrafficLabels::new(self.reporter);
        if let Some(w) = self.src {
            l.source_workload = workload_name(w).into();
            l.source_canonical_service = w.canonical_name.as_str().into();
            l.source_canonical_revision = w.canonical_revision.as_str().into();
            l.source_workload_namespace = w.namespace.as_str().into();
            l.source_app = w.canonical_name.as_str().into();
            l.source_version = w.canonical_revision.as_str().into();
            l.source_cluster = w.cluster_id.as_str().into();
            l.source_region = w.locality.region.as_str().into();
            l.source_zone = w.locality.zone.as_str().into();
        }
        l.source_principal = principal(self.src_identity).into();
        if let Some(w) = self.dst {
            l.destination_workload = workload_name(w).into();
            l.destination_canonical_service = w.canonical_name.as_str().into();
            l.destination_canonical_revision = w.canonical_revision.as_str().into();
            l.destination_workload_namespace = w.namespace.as_str().into();
            l.destination_app = w.canonical_name.as_str().into();
            l.destination_version = w.canonical_revision.as_str().into();
            l.destination_cluster = w.cluster_id.as_str().into();
            l.destination_region = w.locality.region.as_str().into();
            l.destination_zone = w.locality.zone.as_str().into();
        }
        l.destination_principal = principal(self.dst_identity).into();
        if let Some(s) = self.service {
            l.destination_service = s.hostname.as_str().into();
            l.destination_service_namespace = s.namespace.as_str().into();
            l.destination_service_name = s.name.as_str().into();
        }
        l.connection_security_policy = if self.mtls {
            SecurityPolicy::MutualTls
        } else {
            SecurityPolicy::Unknown
        };
        l
    }
}

/// The owning workload's name (Deployment name), else the pod name.
fn workload_name(w: &Workload) -> &str {
    if w.workload_name.is_empty() {
        &w.name
    } else {
        &w.workload_name
    }
}
