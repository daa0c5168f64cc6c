//! The istio-cni plugin's stdin (network config + prevResult): never panics; an error always
//! renders as CNI error JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cni_plugin::plugin::conf::peek_version(data);
    if let Err(e) = cni_plugin::plugin::conf::parse(data) {
        let json = e.to_json();
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
    }
});
