//! Protobuf messages and gRPC stubs for the mesh's control-plane APIs.
//!
//! Owns the `.proto` sources under `proto/` and the Rust generated from them, which is
//! checked in under `src/generated/` (one file per protobuf package) so that building the
//! workspace needs no `protoc`. `tests/regenerate.rs` regenerates everything into a temporary
//! directory and fails if the checked-in files differ; run it with `PROTO_BLESS=1` to update
//! them after editing a `.proto`.
//!
//! Does not own any domain logic: conversions into domain types live in the crates that use
//! them (for example `hbone` for the CA API).
//!
//! Adding a package: put the `.proto` under `proto/`, list it in `PROTOS` in
//! `tests/regenerate.rs`, bless, and add a module below mirroring the protobuf package path.

/// `istio.*` packages.
pub mod istio {
    /// `istio.v1.*` packages.
    pub mod v1 {
        /// `istio.v1.auth`: the Istio certificate authority API (`IstioCertificateService`).
        #[allow(clippy::all, unreachable_pub, missing_docs, reason = "generated code")]
        pub mod auth {
            include!("generated/istio.v1.auth.rs");
        }
    }

    /// `istio.workload`: workload discovery (`Address` = `Workload` | `Service`).
    #[allow(clippy::all, unreachable_pub, missing_docs, reason = "generated code")]
    pub mod workload {
        include!("generated/istio.workload.rs");

        /// `istio.workload.zds`: node agent ⇄ node tunnel pod hand-over.
        #[allow(clippy::all, unreachable_pub, missing_docs, reason = "generated code")]
        pub mod zds {
            include!("generated/istio.workload.zds.rs");
        }
    }

    /// `istio.security`: L4 authorization policies.
    #[allow(clippy::all, unreachable_pub, missing_docs, reason = "generated code")]
    pub mod security {
        include!("generated/istio.security.rs");
    }
}
