//! The `/config_dump` document (spec §10): camelCase keys that `istioctl ztunnel-config`
//! parses. Owns the document's shape; never includes a private key.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use hbone::cert_manager::CertManager;
use hbone::tls::WorkloadCertificate;
use serde_json::{Value, json};

use crate::config::Config;
use crate::inpod::manager::WorkloadManager;
use crate::state::{Snapshot, Store};

fn rfc3339(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{odt}"))
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn cert_json(der: &[u8]) -> Value {
    match x509_summary(der) {
        Some((serial, from, to)) => json!({
            "pem": pem(der),
            "serialNumber": serial,
            "validFrom": rfc3339(from),
            "expirationTime": rfc3339(to),
        }),
        None => json!({ "pem": pem(der) }),
    }
}

/// Serial (decimal, as istioctl parses it) and validity of a DER certificate.
fn x509_summary(der: &[u8]) -> Option<(String, SystemTime, SystemTime)> {
    let cert = hbone::tls::certificate_summary(der).ok()?;
    Some(cert)
}

fn certificate(
    identity: &hbone::Identity,
    state: &str,
    cert: Option<&Arc<WorkloadCertificate>>,
) -> Value {
    let (chain, roots): (Vec<Value>, Vec<Value>) = match cert {
        Some(c) => (
            c.chain().iter().map(|d| cert_json(d)).collect(),
            c.roots().iter().map(|d| cert_json(d)).collect(),
        ),
        None => (vec![], vec![]),
    };
    json!({
        "identity": identity.to_uri(),
        "state": state,
        "certChain": chain,
        "rootCerts": roots,
    })
}

fn services(snap: &Snapshot) -> Vec<Value> {
    snap.services()
        .map(|s| {
            let mut v = serde_json::to_value(s.as_ref()).unwrap_or(Value::Null);
            let endpoints: serde_json::Map<String, Value> = snap
                .endpoints(&s.key())
                .iter()
                .map(|w| {
                    (
                        w.uid.clone(),
                        json!({
                            "workloadUid": w.uid,
                            "service": s.key().to_string(),
                            "port": w.services.get(&s.key()),
                        }),
                    )
                })
                .collect();
            v["endpoints"] = Value::Object(endpoints);
            v
        })
        .collect()
}

/// Builds the whole document.
pub struct ConfigDump {
    pub config: Arc<Config>,
    pub store: Store,
    pub certs: CertManager,
    pub manager: Arc<WorkloadManager>,
    pub static_config: Option<String>,
}

impl ConfigDump {
    pub fn render(&self) -> Value {
        let snap = self.store.snapshot();
        let staged: serde_json::Map<String, Value> = snap
            .staged_endpoints()
            .map(|(k, ws)| {
                (
                    k.to_string(),
                    json!(ws.iter().map(|w| &w.uid).collect::<Vec<_>>()),
                )
            })
            .collect();
        json!({
            "workloads": snap.workloads().map(|w| w.as_ref()).collect::<Vec<_>>(),
            "services": services(&snap),
            "policies": snap.policies().values().map(|p| p.as_ref()).collect::<Vec<_>>(),
            "stagedServices": staged,
            "staticConfig": self.static_config,
            "version": crate::version::BuildInfo::from_env(),
            "configVersion": snap.version(),
            "config": self.config.dump(),
            "certificates": self
                .certs
                .dump()
                .iter()
                .map(|(id, state, cert)| certificate(id, state, cert.as_ref()))
                .collect::<Vec<_>>(),
            "workloadState": self.manager.dump(),
        })
    }
}

impl crate::admin::ConfigDumpSource for ConfigDump {
    fn config_dump(&self) -> Value {
        self.render()
    }
}
