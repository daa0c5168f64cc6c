//! The state-of-the-world xDS client (`xds::client::session::Session::on_sotw_response`) fed
//! arbitrary `DiscoveryResponse`s, one after another on one session (records split on 0xff),
//! with handlers that do ztunnel's boundary work (decode, convert, name from the message). Never
//! panics; every ACK answers the response's nonce and type, NACKs exactly when something was
//! rejected (and then keeps the last accepted version), and what the session holds is exactly
//! what the handlers accepted.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use xds::client::session::{Names, Session};
use xds::pb::envoy::service::discovery::v3::DiscoveryResponse;
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
    let mut accepted: [String; 2] = Default::default();
    for record in data.split(|b| *b == 0xff) {
        let Ok(mut resp) = DiscoveryResponse::decode(record) else {
            continue;
        };
        // Help the fuzzer past the type checks: an empty type means "the subscribed one".
        if resp.type_url.is_empty() {
            resp.type_url = type_url::ADDRESS.to_owned();
        }
        for body in &mut resp.resources {
            if body.type_url.is_empty() {
                body.type_url = resp.type_url.clone();
            }
        }
        let type_url = resp.type_url.clone();
        let nonce = resp.nonce.clone();
        let version = resp.version_info.clone();
        let (ack, outcome, slot) = match type_url.as_str() {
            type_url::ADDRESS => {
                let (a, o) = session.on_sotw_response(resp, &mut addresses);
                (a, o, 0)
            }
            type_url::AUTHORIZATION => {
                let (a, o) = session.on_sotw_response(resp, &mut policies);
                (a, o, 1)
            }
            _ => continue,
        };
        assert_eq!(ack.response_nonce, nonce);
        assert_eq!(ack.type_url, type_url);
        assert_eq!(ack.error_detail.is_some(), outcome.nack.is_some());
        if outcome.nack.is_none() {
            accepted[slot] = version;
        }
        assert_eq!(
            ack.version_info, accepted[slot],
            "ACK/NACK carries the last accepted version"
        );
        let held = |t: &str| session.held(t).into_keys().collect::<BTreeSet<_>>();
        assert_eq!(held(type_url::ADDRESS), addresses.names());
        assert_eq!(held(type_url::AUTHORIZATION), policies.names());
    }
});
