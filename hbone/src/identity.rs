//! The SPIFFE workload identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Parsing is strict (spec §0): exactly five path segments after the scheme, the literal
//! keywords `ns` and `sa`, no empty segment, and only the SPIFFE-allowed characters. Anything
//! else is not an identity. Owns nothing but the type and its parse/format.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

const SCHEME: &str = "spiffe://";
/// Longest URI we accept (the SPIFFE spec caps a SPIFFE ID at 2048 bytes).
const MAX_LEN: usize = 2048;

/// Why a string is not an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity {0:?}: missing spiffe:// scheme")]
    Scheme(String),
    #[error("identity {uri:?}: expected spiffe://<td>/ns/<ns>/sa/<sa>, {why}")]
    Shape { uri: String, why: &'static str },
    #[error("identity is longer than {MAX_LEN} bytes")]
    TooLong,
}

/// A parsed SPIFFE identity. Cheap to clone (one `Arc`); compares by its three parts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Arc<Parts>);

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

impl Identity {
    /// Builds an identity from its parts, validating each as the parser would.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.0.trust_domain
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    /// The Kubernetes service account.
    pub fn service_account(&self) -> &str {
        &self.0.service_account
    }

    /// The URI form, as it appears in a certificate's URI SAN.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }
}

fn valid_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        if uri.len() > MAX_LEN {
            return Err(IdentityError::TooLong);
        }
        let shape = |why| IdentityError::Shape {
            uri: uri.to_owned(),
            why,
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::Scheme(uri.to_owned()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [td, ns_kw, ns, sa_kw, sa] = parts.as_slice() else {
            return Err(shape("wrong number of path segments"));
        };
        if !valid_trust_domain(td) {
            return Err(shape("invalid trust domain"));
        }
        if *ns_kw != "ns" || *sa_kw != "sa" {
            return Err(shape("keywords must be `ns` and `sa`"));
        }
        if !valid_segment(ns) || !valid_segment(sa) {
            return Err(shape("invalid namespace or service account segment"));
        }
        Ok(Identity(Arc::new(Parts {
            trust_domain: (*td).to_owned(),
            namespace: (*ns).to_owned(),
            service_account: (*sa).to_owned(),
        })))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.0.trust_domain, self.0.namespace, self.0.service_account
        )
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let id: Identity = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        assert_eq!(
            Identity::new("cluster.local", "default", "bookinfo-productpage").unwrap(),
            id
        );
    }

    #[test]
    fn rejects_everything_else() {
        let bad = [
            "",
            "spiffe://",
            "http://cluster.local/ns/a/sa/b",
            "SPIFFE://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/ns/a/sa/b/",
            "spiffe://cluster.local/ns/a/sa",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/namespace/a/sa/b",
            "spiffe://cluster.local/ns/a/serviceaccount/b",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/a/sa/",
            "spiffe:///ns/a/sa/b",
            "spiffe://Cluster.Local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a\0/sa/b",
            "spiffe://cluster.local/ns/a/sa/b\0",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a b/sa/b",
            "spiffe://cluster.local:8080/ns/a/sa/b",
            "spiffe://user@cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/ns/a/sa/b#f",
            "spiffe://cluster.local/ns/%61/sa/b",
            " spiffe://cluster.local/ns/a/sa/b",
        ];
        for s in bad {
            assert!(s.parse::<Identity>().is_err(), "{s:?} must be rejected");
        }
        let long = format!("spiffe://cluster.local/ns/{}/sa/b", "a".repeat(3000));
        assert_eq!(long.parse::<Identity>(), Err(IdentityError::TooLong));
    }
}
