//! The node tunnel's delta xDS client (`xds::client::session::Session::on_delta_response`)
//! fed arbitrary `DeltaDiscoveryResponse`s, one after another on one session (records split on
//! 0xff), with handlers that do ztunnel's boundary work: decode, convert
//! (`AddressResource::try_from`, `Authorization::try_from`), check the resource name. Never
//! panics; every ACK answers the response's nonce and type, NACKs exactly when something was
//! rejected, and what the session holds is exactly what the handlers accepted.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use xds::client::session::{Names, Session};
use xds::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use xds::type_url;

#[path = "xds_handlers.rs"]
mod xds_handlers;
use xds_handlers::{AddressHandler, AuthorizationHandler};

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(vec![
        (type_url::ADDRESS.to_owned(), Names::Wildcard),
        (type_url::AUTHORIZATION.to_owned(), Names::Wildcard),
    ]);
    let mut addresses = AddressHandler::default();
    let mut policies = AuthorizationHandler::default();
    for record in data.split(|b| *b == 0xff) {
        let Ok(mut resp) = DeltaDiscoveryResponse::decode(record) else {
            continue;
        };
        // Help the fuzzer past the type checks: an empty type means "the subscribed one".
        if resp.type_url.is_empty() {
            resp.type_url = type_url::ADDRESS.to_owned();
        }
        for r in &mut resp.resources {
            if let Some(body) = r.resource.as_mut().filter(|b| b.type_url.is_empty()) {
                body.type_url = resp.type_url.clone();
            }
        }
        let type_url = resp.type_url.clone();
        let nonce = resp.nonce.clone();
        // As the client does: a response for a type it did not subscribe to ends the stream.
        let (ack, outcome) = match type_url.as_str() {
            type_url::ADDRESS => session.on_delta_response(resp, &mut addresses),
            type_url::AUTHORIZATION => session.on_delta_response(resp, &mut policies),
            _ => continue,
        };
        assert_eq!(ack.response_nonce, nonce);
        assert_eq!(ack.type_url, type_url);
        assert_eq!(ack.error_detail.is_some(), outcome.nack.is_some());
        let held = |t: &str| session.held(t).into_keys().collect::<BTreeSet<_>>();
        assert_eq!(held(type_url::ADDRESS), addresses.names());
        assert_eq!(held(type_url::AUTHORIZATION), policies.names());
    }
});
