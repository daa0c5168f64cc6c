//! The ADS server's Prometheus metrics: names, help texts and the one label (`type`, a closed set of short
//! names, so a client sending made-up type URLs cannot grow the label space).
//!
//! Names are registered without `_total`: prometheus-client appends it to counters itself.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::type_url;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

impl TypeLabels {
    fn of(url: &str) -> Self {
        let r#type = match url {
            type_url::CLUSTER => "cluster",
            type_url::ENDPOINT => "endpoint",
            type_url::LISTENER => "listener",
            type_url::ROUTE => "route",
            type_url::SECRET => "secret",
            type_url::ADDRESS => "address",
            type_url::AUTHORIZATION => "authorization",
            _ => "other",
        };
        TypeLabels { r#type }
    }
}

/// Handles to the server's metrics; clones share the same values.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    connected: Gauge,
    pushes: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "xds_connected_clients",
            "ADS streams currently open",
            self.connected.clone(),
        );
        registry.register(
            "xds_pushes",
            "xDS responses sent, by resource type",
            self.pushes.clone(),
        );
        registry.register(
            "xds_acks",
            "xDS responses ACKed by clients, by resource type",
            self.acks.clone(),
        );
        registry.register(
            "xds_nacks",
            "xDS responses rejected (NACKed) by clients, by resource type",
            self.nacks.clone(),
        );
    }

    pub(crate) fn connected(&self) -> &Gauge {
        &self.connected
    }

    pub(crate) fn pushed(&self, type_url: &str) {
        self.pushes.get_or_create(&TypeLabels::of(type_url)).inc();
    }

    pub(crate) fn acked(&self, type_url: &str) {
        self.acks.get_or_create(&TypeLabels::of(type_url)).inc();
    }

    pub(crate) fn nacked(&self, type_url: &str) {
        self.nacks.get_or_create(&TypeLabels::of(type_url)).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounded_labels() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.connected().inc();
        m.pushed(type_url::CLUSTER);
        m.acked(type_url::CLUSTER);
        m.nacked("type.googleapis.com/made.up.by.a.client");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        for line in [
            "xds_connected_clients 1",
            "xds_pushes_total{type=\"cluster\"} 1",
            "xds_acks_total{type=\"cluster\"} 1",
            "xds_nacks_total{type=\"other\"} 1",
        ] {
            assert!(out.contains(line), "{line} missing in\n{out}");
        }
    }
}
