//! What `ztunnel version` prints: the build, in the shape of Istio's ztunnel
//! (`version.BuildInfo{Version:"…", GitRevision:"…", …}`), which Istio's tooling reads.
//!
//! The build-time fields come from `build.rs`; only the Istio version is read at run time
//! ([`ISTIO_VERSION`]). The config dump's `version` is this object in camelCase, as upstream's. Does not own
//! the `version` metric.

use std::fmt;

use crate::config::vars::ISTIO_VERSION;

/// The crypto provider behind every TLS connection (rustls with aws-lc-rs, see `hbone::tls`).
const CRYPTO_PROVIDER: &str = "aws-lc-rs";

/// This binary's build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// `git rev-parse HEAD` of the checkout, `-dirty` if it had uncommitted changes; "unknown" outside git.
    pub git_revision: &'static str,
    /// The compiler's version, e.g. `1.95.0`.
    pub rust_version: &'static str,
    /// The cargo profile: `debug` or `release`.
    pub build_profile: &'static str,
    /// `Clean` or `Modified` (uncommitted changes), "unknown" outside git.
    pub build_status: &'static str,
    /// `git describe --tags --always`; "unknown" outside git.
    pub git_tag: &'static str,
    /// The Istio release this ztunnel is deployed with (`ISTIO_META_ISTIO_VERSION`).
    pub istio_version: String,
    /// The TLS crypto provider.
    pub crypto_provider: &'static str,
}

impl BuildInfo {
    /// This binary's build, with the Istio version from the environment.
    pub fn from_env() -> Self {
        let istio = std::env::var(ISTIO_VERSION.name).ok();
        Self::new(istio.as_deref().filter(|v| !v.is_empty()))
    }

    /// This binary's build; `istio_version` unset reads as "unknown".
    pub fn new(istio_version: Option<&str>) -> Self {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            git_revision: env!("ZTUNNEL_BUILD_GIT_REVISION"),
            rust_version: env!("ZTUNNEL_BUILD_RUST_VERSION"),
            build_profile: env!("ZTUNNEL_BUILD_PROFILE"),
            build_status: env!("ZTUNNEL_BUILD_STATUS"),
            git_tag: env!("ZTUNNEL_BUILD_GIT_TAG"),
            istio_version: istio_version.unwrap_or(ISTIO_VERSION.default).to_owned(),
            crypto_provider: CRYPTO_PROVIDER,
        }
    }
}

impl fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "version.BuildInfo{{Version:{:?}, GitRevision:{:?}, RustVersion:{:?}, BuildProfile:{:?}, \
             BuildStatus:{:?}, GitTag:{:?}, IstioVersion:{:?}, CryptoProvider:{:?}}}",
            self.version,
            self.git_revision,
            self.rust_version,
            self.build_profile,
            self.build_status,
            self.git_tag,
            self.istio_version,
            self.crypto_provider,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_istio_build_info_shape() {
        let info = BuildInfo {
            version: "0.1.0",
            git_revision: "abc123-dirty",
            rust_version: "1.95.0",
            build_profile: "release",
            build_status: "Modified",
            git_tag: "abc123",
            istio_version: "1.28.0".into(),
            crypto_provider: "aws-lc-rs",
        };
        assert_eq!(
            info.to_string(),
            "version.BuildInfo{Version:\"0.1.0\", GitRevision:\"abc123-dirty\", RustVersion:\"1.95.0\", \
             BuildProfile:\"release\", BuildStatus:\"Modified\", GitTag:\"abc123\", IstioVersion:\"1.28.0\", \
             CryptoProvider:\"aws-lc-rs\"}"
        );
    }

    #[test]
    fn build_time_fields_are_filled() {
        let info = BuildInfo::new(None);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.istio_version, "unknown");
        assert!(
            ["debug", "release"].contains(&info.build_profile),
            "{}",
            info.build_profile
        );
        assert!(
            info.rust_version.starts_with(|c: char| c.is_ascii_digit()),
            "{}",
            info.rust_version
        );
        assert!(
            ["Clean", "Modified", "unknown"].contains(&info.build_status),
            "{}",
            info.build_status
        );
        assert_eq!(BuildInfo::new(Some("1.28.0")).istio_version, "1.28.0");
    }
}
