//! xDS → domain conversion (`ztunnel::model::from_proto`): arbitrary bytes decoded as
//! `istio.workload.Address` and `istio.security.Authorization` never panic the conversion, and
//! whatever converts survives the config_dump / local-config JSON shape unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::istio::{security, workload};
use ztunnel::model::Authorization;
use ztunnel::model::from_proto::AddressResource;

fn json_round_trip<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(v).expect("domain types serialize");
    let back: T = serde_json::from_str(&json).expect("serialized domain types parse");
    assert_eq!(&back, v, "{json}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = workload::Address::decode(data) {
        match AddressResource::try_from(a) {
            Ok(AddressResource::Workload(w)) => {
                assert!(w.identity().is_ok());
                json_round_trip(&w);
            }
            Ok(AddressResource::Service(s)) => json_round_trip(&s),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Ok(p) = security::Authorization::decode(data) {
        if let Ok(p) = Authorization::try_from(p) {
            json_round_trip(&p);
        }
    }
});
