//! A test CA for this and other crates' tests (feature `test-util`): a fresh self-signed
//! root that issues workload certificates of any validity, and can simulate an outage.
//!
//! Panics on internal failures: it is test code, never fed peer input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::ca::{BoxFuture, CaError, CertificateFetcher, Signer, generate_csr};
use crate::identity::Identity;
use crate::tls::WorkloadCertificate;

/// A self-signed test root plus a switchable "CA is up" flag.
#[derive(Debug, Clone)]
pub struct TestCa {
    signer: Arc<Signer>,
    validity: Arc<std::sync::Mutex<Duration>>,
    down: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
}

impl TestCa {
    /// A new root; fetched certificates last `validity`.
    #[allow(clippy::expect_used, reason = "test utility")]
    pub fn new(validity: Duration) -> Self {
        let name = format!("test-ca-{:016x}", rand::random::<u64>());
        let signer = Signer::self_signed_root(&name, Duration::from_secs(365 * 24 * 3600))
            .expect("generate test root");
        Self {
            signer: Arc::new(signer),
            validity: Arc::new(std::sync::Mutex::new(validity)),
            down: Arc::new(AtomicBool::new(false)),
            issued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The underlying signer (e.g. to serve it with `CaService`).
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// Simulates a CA outage (`true`) or recovery.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many certificates `fetch` issued.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    /// Certificate valid from one second ago for `validity`.
    pub fn issue(&self, identity: &Identity, validity: Duration) -> WorkloadCertificate {
        let now = SystemTime::now();
        self.issue_window(identity, now - Duration::from_secs(1), now + validity)
    }

    /// Certificate with an explicit validity window (may be entirely in the past).
    #[allow(clippy::expect_used, reason = "test utility")]
    pub fn issue_window(
        &self,
        identity: &Identity,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> WorkloadCertificate {
        let csr = generate_csr(identity).expect("csr");
        let chain = self
            .signer
            .sign_window(&csr.pem, identity, not_before, not_after)
            .expect("sign");
        WorkloadCertificate::from_ca_response(identity, csr.key_pkcs8_der, &chain).expect("parse")
    }
}

impl CertificateFetcher for TestCa {
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<WorkloadCertificate, CaError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(CaError::Unavailable {
                    identity: identity.clone(),
                    reason: "test CA is down".into(),
                });
            }
            let validity = *self.validity.lock().unwrap_or_else(|e| e.into_inner());
            self.issued.fetch_add(1, Ordering::SeqCst);
            Ok(self.issue(identity, validity))
        })
    }
}
