//! The mesh root every control-plane replica shares on a cluster (`--ca-root-secret`), kept as istiod
//! keeps its self-signed root: a Secret (istiod's is [`ISTIOD_SECRET`]; type `istio.io/ca-root`, keys
//! `ca-cert.pem` and `ca-key.pem`) in the control plane's namespace. The first replica to start makes it; the others,
//! and every restart, read it; a replica that loses the race to create it reads the winner's. So two
//! replicas never sign under different roots, and a root istiod made is taken over as it is.
//!
//! RBAC: `get` and `create` on secrets in the control plane's namespace.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::{CaSetupError, Root};

/// The Secret istiod keeps its self-signed root in (what the chart names).
pub const ISTIOD_SECRET: &str = "istio-ca-secret";
const SECRET_TYPE: &str = "istio.io/ca-root";
const CERT_KEY: &str = "ca-cert.pem";
const KEY_KEY: &str = "ca-key.pem";

/// The root in `secret`, or why it is not usable.
fn root_of(secret: &Secret) -> Result<Root, String> {
    let field = |key: &str| -> Result<String, String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| format!("no {key}"))?;
        let text = String::from_utf8(data.0.clone()).map_err(|_| format!("{key} is not text"))?;
        if !text.contains("-----BEGIN") {
            return Err(format!("{key} is not PEM"));
        }
        Ok(text)
    };
    Ok(Root {
        cert_pem: field(CERT_KEY)?,
        key_pem: field(KEY_KEY)?,
    })
}

fn secret_for(root: &Root, namespace: &str, name: &str) -> Secret {
    let data = BTreeMap::from([
        (
            CERT_KEY.to_owned(),
            ByteString(root.cert_pem.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_owned(),
            ByteString(root.key_pem.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The shared root in Secret `namespace/name`, made with `make` and stored when there is none yet.
pub async fn load_or_create(
    client: &Client,
    namespace: &str,
    name: &str,
    make: impl FnOnce() -> Result<Root, String>,
) -> Result<Root, CaSetupError> {
    let err = |reason: String| CaSetupError::Secret {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(found) = api.get_opt(name).await.map_err(|e| err(e.to_string()))? {
        tracing::info!(namespace, name, "CA root read from its Secret");
        return root_of(&found).map_err(err);
    }
    let root = make().map_err(err)?;
    match api
        .create(&PostParams::default(), &secret_for(&root, namespace, name))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, name, "new CA root stored in its Secret");
            Ok(root)
        }
        // Another replica stored its root first: use that one.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let won = api.get(name).await.map_err(|e| err(e.to_string()))?;
            tracing::info!(namespace, name, "CA root read from its Secret");
            root_of(&won).map_err(err)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_root_reads_back_and_a_bad_one_says_why() {
        let root = Root {
            cert_pem: "-----BEGIN CERTIFICATE-----\nA\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nB\n".into(),
        };
        let secret = secret_for(&root, "istio-system", ISTIOD_SECRET);
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        let back = root_of(&secret).unwrap();
        assert_eq!((back.cert_pem, back.key_pem), (root.cert_pem, root.key_pem));
        let mut broken = secret.clone();
        broken.data.as_mut().unwrap().remove(KEY_KEY);
        assert_eq!(root_of(&broken).unwrap_err(), "no ca-key.pem");
        let mut garbage = secret;
        garbage
            .data
            .as_mut()
            .unwrap()
            .insert(CERT_KEY.into(), ByteString(b"junk".to_vec()));
        assert_eq!(root_of(&garbage).unwrap_err(), "ca-cert.pem is not PEM");
    }
}
