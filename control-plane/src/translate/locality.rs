//! A workload's locality (`Workload.locality`, spec §4) as istiod derives it: the pod's `istio-locality` label
//! (`region.zone.subzone`) when set, else its node's topology labels — `topology.kubernetes.io/region` and
//! `/zone` (or the older `failure-domain.beta.kubernetes.io/…`) and `topology.istio.io/subzone`. Pure.

use std::collections::BTreeMap;

use proto::istio::workload as xw;

const POD_LOCALITY: &str = "istio-locality";
const REGION: [&str; 2] = [
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
const ZONE: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
const SUBZONE: &str = "topology.istio.io/subzone";

/// The locality of a pod with `pod_labels` on a node with `node_labels` (`None`: no Node object, or no
/// topology labels).
pub(super) fn locality(
    pod_labels: &BTreeMap<String, String>,
    node_labels: Option<&BTreeMap<String, String>>,
) -> Option<xw::Locality> {
    if let Some(l) = pod_labels.get(POD_LOCALITY).filter(|l| !l.is_empty()) {
        let mut parts = l.splitn(3, '.').map(str::to_owned);
        return Some(xw::Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        });
    }
    let labels = node_labels?;
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| labels.get(*k))
            .cloned()
            .unwrap_or_default()
    };
    let l = xw::Locality {
        region: first(&REGION),
        zone: first(&ZONE),
        subzone: first(&[SUBZONE]),
    };
    (l != xw::Locality::default()).then_some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn loc(region: &str, zone: &str, subzone: &str) -> Option<xw::Locality> {
        Some(xw::Locality {
            region: region.into(),
            zone: zone.into(),
            subzone: subzone.into(),
        })
    }

    #[test]
    fn from_the_node_the_pod_label_or_nothing() {
        let node = labels(&[
            ("topology.kubernetes.io/region", "eu-west"),
            ("topology.kubernetes.io/zone", "eu-west-1a"),
            ("topology.istio.io/subzone", "rack7"),
        ]);
        let none = BTreeMap::new();
        assert_eq!(
            locality(&none, Some(&node)),
            loc("eu-west", "eu-west-1a", "rack7")
        );
        let legacy = labels(&[("failure-domain.beta.kubernetes.io/zone", "z1")]);
        assert_eq!(locality(&none, Some(&legacy)), loc("", "z1", ""));
        let pod = labels(&[("istio-locality", "us.us-east-1b.r2")]);
        assert_eq!(locality(&pod, Some(&node)), loc("us", "us-east-1b", "r2"));
        assert_eq!(
            locality(&none, Some(&labels(&[("kubernetes.io/os", "linux")]))),
            None
        );
        assert_eq!(locality(&none, None), None);
    }
}
