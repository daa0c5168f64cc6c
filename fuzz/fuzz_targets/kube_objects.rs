//! Objects as the API server sends them to the control plane's Kubernetes source: arbitrary bytes as a JSON
//! array of objects → each becomes a watch event for the kind it names → the store (parse once, keep the
//! error) → the translation that sets aside what it refuses → the waypoint controller's desired objects and
//! statuses. Never panics; every error renders.
#![no_main]

use control_plane::kube_source::desired::{Settings, desired};
use control_plane::kube_source::isolate::translate_isolating;
use control_plane::kube_source::store::{Change, Store};
use control_plane::kube_source::watch::KINDS;
use control_plane::translate::Options;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(objects)) = serde_json::from_slice(data) else {
        return;
    };
    let mut store = Store::default();
    for object in objects.into_iter().take(64) {
        let named = object.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let Some(kind) = KINDS.iter().find(|k| k.kind == named) else {
            continue;
        };
        let deleted = object.get("deleted").is_some();
        store.apply(if deleted {
            Change::Delete { kind: kind.kind, object }
        } else {
            Change::Apply { kind: kind.kind, object }
        });
    }
    for (_, _, e) in store.rejected() {
        let _ = e.to_string();
    }
    let options = Options {
        allocate_addresses: false,
        ..Options::default()
    };
    let (translated, aside) = translate_isolating(store.objects(), &options);
    for (key, e) in aside {
        let _ = (key.to_string(), e.to_string());
    }
    if let Err(e) = translated {
        let _ = e.to_string();
    }
    let settings = Settings {
        image: "waypoint".into(),
        xds_address: "https://cp:15012".into(),
        trust_domain: "cluster.local".into(),
        root_cert_pem: String::new(),
    };
    let d = desired(&store, &settings);
    let _ = (d.objects.len(), d.statuses.len());
});
