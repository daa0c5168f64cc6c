//! Handlers shared by the xDS client targets: ztunnel's boundary work without its store.
//! Not a target itself (included with `#[path]`).

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use xds::client::{Changes, Handler, Rejected};
use xds::pb::google::protobuf::Any;
use ztunnel::model::Authorization;
use ztunnel::model::from_proto::AddressResource;

fn address(body: &Any) -> Result<(String, AddressResource), String> {
    let a = proto::istio::workload::Address::decode(body.value.as_slice())
        .map_err(|e| format!("cannot decode: {e}"))?;
    let r = AddressResource::try_from(a).map_err(|e| e.to_string())?;
    let name = match &r {
        AddressResource::Workload(w) => w.uid.clone(),
        AddressResource::Service(s) => s.key().to_string(),
    };
    Ok((name, r))
}

fn policy(body: &Any) -> Result<Authorization, String> {
    let p = proto::istio::security::Authorization::decode(body.value.as_slice())
        .map_err(|e| format!("cannot decode: {e}"))?;
    Authorization::try_from(p).map_err(|e| e.to_string())
}

/// Accepts an `Address` whose name is its workload uid or `namespace/hostname`.
#[derive(Default)]
pub struct AddressHandler {
    held: BTreeMap<String, AddressResource>,
}

impl AddressHandler {
    pub fn names(&self) -> BTreeSet<String> {
        self.held.keys().cloned().collect()
    }
}

impl Handler for AddressHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        for name in &changes.removed {
            self.held.remove(name);
        }
        let mut rejected = Vec::new();
        for u in changes.updated {
            match address(&u.body) {
                Ok((name, r)) if name == u.name => {
                    self.held.insert(name, r);
                }
                Ok((name, _)) => rejected.push(Rejected::new(u.name, format!("names {name}"))),
                Err(e) => rejected.push(Rejected::new(u.name, e)),
            }
        }
        rejected
    }

    fn resource_name(&self, body: &Any) -> Result<String, String> {
        address(body).map(|(name, _)| name)
    }
}

/// Accepts an `Authorization` whose name is its `namespace/name`.
#[derive(Default)]
pub struct AuthorizationHandler {
    held: BTreeMap<String, Authorization>,
}

impl AuthorizationHandler {
    pub fn names(&self) -> BTreeSet<String> {
        self.held.keys().cloned().collect()
    }
}

impl Handler for AuthorizationHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        for name in &changes.removed {
            self.held.remove(name);
        }
        let mut rejected = Vec::new();
        for u in changes.updated {
            match policy(&u.body) {
                Ok(p) if p.key() == u.name => {
                    self.held.insert(u.name, p);
                }
                Ok(p) => rejected.push(Rejected::new(u.name, format!("names {}", p.key()))),
                Err(e) => rejected.push(Rejected::new(u.name, e)),
            }
        }
        rejected
    }

    fn resource_name(&self, body: &Any) -> Result<String, String> {
        policy(body).map(|p| p.key())
    }
}
