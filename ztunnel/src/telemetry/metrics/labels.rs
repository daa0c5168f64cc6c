//! Label sets and label values of the tunnel's metrics (spec §9).
//!
//! Owns: `CommonTrafficLabels` (field order = exposed label order), the closed value sets (`reporter`,
//! `request_protocol`, `response_flags`, `connection_security_policy`, xDS termination `reason`) and the
//! "empty → `unknown`" rule, which [`OrUnknown`] enforces by construction.
//! Does not own: where values come from (the proxies decide) or metric names (see the parent module).

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A label value that renders as `unknown` when empty. Construct it from `&str`, `String` or `Option<_>`; empty
/// strings become "unknown" so no caller can expose an empty label. Cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OrUnknown(Option<Arc<str>>);

impl OrUnknown {
    /// The rendering of an absent value.
    pub const UNKNOWN: &'static str = "unknown";

    /// The value, or `None` when it renders as `unknown`.
    pub fn as_option(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The value as exposed (`unknown` when absent).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or(Self::UNKNOWN)
    }

    /// True when the value renders as `unknown`.
    pub fn is_unknown(&self) -> bool {
        self.0.is_none()
    }
}

impl From<&str> for OrUnknown {
    fn from(value: &str) -> Self {
        if value.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::from(value)))
        }
    }
}

impl From<String> for OrUnknown {
    fn from(value: String) -> Self {
        if value.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::from(value)))
        }
    }
}

impl From<&String> for OrUnknown {
    fn from(value: &String) -> Self {
        Self::from(value.as_str())
    }
}

impl<T: Into<OrUnknown>> From<Option<T>> for OrUnknown {
    fn from(value: Option<T>) -> Self {
        value.map(Into::into).unwrap_or_default()
    }
}

impl std::fmt::Display for OrUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for OrUnknown {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write_escaped(encoder, self.as_str())
    }
}

/// prometheus-client writes label values verbatim; values that can come from peers (baggage) are escaped here as the
/// text formats require (`\` `"` and newline).
fn write_escaped(encoder: &mut LabelValueEncoder, value: &str) -> Result<(), std::fmt::Error> {
    if !value.contains(['\\', '"', '\n']) {
        return encoder.write_str(value);
    }
    for c in value.chars() {
        match c {
            '\\' => encoder.write_str("\\\\")?,
            '"' => encoder.write_str("\\\"")?,
            '\n' => encoder.write_str("\\n")?,
            other => encoder.write_char(other)?,
        }
    }
    Ok(())
}

/// Implements `EncodeLabelValue` and `as_str` for a fieldless enum with fixed wire strings.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The exposed label value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Which side of the connection reports: the outbound (client-side) tunnel or the inbound one.
    #[derive(Default)]
    Reporter {
        /// Outbound side.
        #[default]
        Source => "source",
        /// Inbound side.
        Destination => "destination",
    }
);

label_enum!(
    /// `request_protocol`; the node tunnel only speaks TCP.
    #[derive(Default)]
    RequestProtocol {
        /// Plain TCP (also TCP inside HBONE).
        #[default]
        Tcp => "tcp",
    }
);

label_enum!(
    /// `connection_security_policy`.
    #[derive(Default)]
    SecurityPolicy {
        /// HBONE with mutual TLS.
        MutualTls => "mutual_tls",
        /// Anything else (passthrough, plaintext).
        #[default]
        Unknown => "unknown",
    }
);

label_enum!(
    /// `response_flags`: `-` or the failure classes of spec §2.7.
    #[derive(Default)]
    ResponseFlag {
        /// No failure.
        #[default]
        None => "-",
        /// TCP connect to 15008 timed out (probably a NetworkPolicy).
        NetworkPolicy => "NETWORK_POLICY",
        /// Any other connect error.
        Connect => "CONNECT",
        /// TLS handshake failed.
        TlsFailure => "TLS_FAILURE",
        /// HTTP/2 handshake failed.
        H2HandshakeFailure => "H2_HANDSHAKE_FAILURE",
        /// No certificate available.
        IdentityError => "IDENTITY_ERROR",
        /// Denied by authorization, at connect or later.
        Deny => "DENY",
        /// Peer certificate revoked (CRL).
        CertRevoked => "CERT_REVOKED",
    }
);

label_enum!(
    /// `reason` of `istio_xds_connection_terminations_total`.
    XdsTerminationReason {
        /// The stream could not be established.
        ConnectionError => "ConnectionError",
        /// The stream ended with an error.
        Error => "Error",
        /// The client reconnects (e.g. the server asked it to).
        Reconnect => "Reconnect",
        /// The stream ended cleanly.
        Complete => "Complete",
    }
);

/// Labels of the `istio_tcp_*` connection families, in the exposed order. Build with struct-update syntax:
/// `CommonTrafficLabels { reporter: Reporter::Destination, source_workload: name.into(), ..Default::default() }`;
/// every string field is an [`OrUnknown`], so empty values render as `unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CommonTrafficLabels {
    pub reporter: Reporter,
    pub source_workload: OrUnknown,
    pub source_canonical_service: OrUnknown,
    pub source_canonical_revision: OrUnknown,
    pub source_workload_namespace: OrUnknown,
    pub source_principal: OrUnknown,
    pub source_app: OrUnknown,
    pub source_version: OrUnknown,
    pub source_cluster: OrUnknown,
    pub destination_service: OrUnknown,
    pub destination_service_namespace: OrUnknown,
    pub destination_service_name: OrUnknown,
    pub destination_workload: OrUnknown,
    pub destination_canonical_service: OrUnknown,
    pub destination_canonical_revision: OrUnknown,
    pub destination_workload_namespace: OrUnknown,
    pub destination_principal: OrUnknown,
    pub destination_app: OrUnknown,
    pub destination_version: OrUnknown,
    pub destination_cluster: OrUnknown,
    pub request_protocol: RequestProtocol,
    pub response_flags: ResponseFlag,
    pub connection_security_policy: SecurityPolicy,
    pub source_region: OrUnknown,
    pub source_zone: OrUnknown,
    pub destination_region: OrUnknown,
    pub destination_zone: OrUnknown,
}

impl CommonTrafficLabels {
    /// All-`unknown` labels for one reporter (`request_protocol="tcp"`, `response_flags="-"`).
    pub fn new(reporter: Reporter) -> Self {
        Self {
            reporter,
            ..Default::default()
        }
    }

    /// The same labels with another `response_flags` value.
    pub fn with_response_flag(&self, flag: ResponseFlag) -> Self {
        Self {
            response_flags: flag,
            ..self.clone()
        }
    }
}

/// Labels of `istio_tcp_sockets_open`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ReporterLabels {
    pub(crate) reporter: Reporter,
}

/// Labels of `istio_build`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub(crate) component: &'static str,
    pub(crate) tag: String,
}

/// Labels of `istio_xds_connection_terminations_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct XdsTerminationLabels {
    pub(crate) reason: XdsTerminationReason,
}

/// Labels of the per-type-URL xDS families. The set of type URLs is small and fixed by the client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct XdsTypeLabels {
    pub(crate) url: String,
}
