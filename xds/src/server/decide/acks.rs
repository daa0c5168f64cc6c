//! ACK/NACK bookkeeping of one type on one stream: which responses are awaiting an answer, and what a
//! request says about them (ACK, NACK, stale, or a plain request).

use std::collections::VecDeque;

use envoy_types::pb::google::rpc::Status;

/// The last response sent for a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) version: String,
    pub(crate) nonce: String,
}

/// The last rejection of a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nack {
    /// The version the client kept (SotW `version_info`; in delta, the last version it ACKed).
    pub(crate) version: String,
    /// The version of the rejected response.
    pub(crate) rejected_version: String,
    pub(crate) nonce: String,
    pub(crate) message: String,
}

/// What a request says about the responses of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// No nonce, or the nonce of a response already answered: a subscription request, neither ACK nor NACK.
    Request,
    /// A nonce that is not (or no longer) awaiting an answer: ignored for ACK/NACK.
    Stale,
    /// The client applied the response; `version` is the version it now runs.
    Ack { version: String },
    /// The client rejected the response.
    Nack(Nack),
}

/// Responses awaiting an answer, and the last sent / ACKed / NACKed state of one type.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckLedger {
    /// (nonce, version) of unanswered responses, oldest first; at most `window` long.
    in_flight: VecDeque<(String, String)>,
    pub(crate) last_sent: Option<Sent>,
    pub(crate) acked_version: Option<String>,
    pub(crate) last_nack: Option<Nack>,
}

impl AckLedger {
    /// Records a response. Only the last `window` unanswered responses can still be ACKed or NACKed (1 for
    /// SotW, where every response supersedes the previous one).
    pub(crate) fn sent(&mut self, nonce: &str, version: &str, window: usize) {
        self.in_flight
            .push_back((nonce.to_owned(), version.to_owned()));
        while self.in_flight.len() > window.max(1) {
            self.in_flight.pop_front();
        }
        self.last_sent = Some(Sent {
            version: version.to_owned(),
            nonce: nonce.to_owned(),
        });
    }

    /// Classifies a request by its `nonce` and `error`. `client_version` is the SotW `version_info` (what the
    /// client runs); delta requests carry none, so the version of the answered response is used instead.
    pub(crate) fn reply(
        &mut self,
        nonce: &str,
        client_version: Option<&str>,
        error: Option<&Status>,
    ) -> Reply {
        if nonce.is_empty() {
            return Reply::Request;
        }
        let Some(pos) = self.in_flight.iter().position(|(n, _)| n == nonce) else {
            let latest = self.last_sent.as_ref().is_some_and(|s| s.nonce == nonce);
            return if latest { Reply::Request } else { Reply::Stale };
        };
        let mut answered = self.in_flight.drain(..=pos);
        let Some((_, sent_version)) = answered.next_back() else {
            return Reply::Stale;
        };
        drop(answered);
        match error {
            None => {
                let version = client_version.map_or(sent_version, str::to_owned);
                self.acked_version = Some(version.clone());
                Reply::Ack { version }
            }
            Some(status) => {
                let kept = client_version
                    .map(str::to_owned)
                    .or_else(|| self.acked_version.clone());
                let nack = Nack {
                    version: kept.unwrap_or_default(),
                    rejected_version: sent_version,
                    nonce: nonce.to_owned(),
                    message: status.message.clone(),
                };
                self.last_nack = Some(nack.clone());
                Reply::Nack(nack)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(msg: &str) -> Status {
        Status {
            code: 13,
            message: msg.to_owned(),
            details: vec![],
        }
    }

    fn ack(v: &str) -> Reply {
        Reply::Ack {
            version: v.to_owned(),
        }
    }

    fn nack(kept: &str, rejected: &str, nonce: &str, msg: &str) -> Reply {
        Reply::Nack(Nack {
            version: kept.to_owned(),
            rejected_version: rejected.to_owned(),
            nonce: nonce.to_owned(),
            message: msg.to_owned(),
        })
    }

    #[test]
    fn table() {
        // (sent (nonce, version)…, window, request (nonce, client version, error), expected reply)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            usize,
            (&'a str, Option<&'a str>, Option<&'a str>),
            Reply,
        );
        let cases: &[Case] = &[
            ("first request", &[], 1, ("", None, None), Reply::Request),
            (
                "sotw ack",
                &[("1", "v1")],
                1,
                ("1", Some("v1"), None),
                ack("v1"),
            ),
            (
                "sotw nack keeps version",
                &[("1", "v1"), ("2", "v2")],
                1,
                ("2", Some("v1"), Some("bad")),
                nack("v1", "v2", "2", "bad"),
            ),
            (
                "sotw stale nonce",
                &[("1", "v1"), ("2", "v2")],
                1,
                ("1", Some("v1"), None),
                Reply::Stale,
            ),
            (
                "sotw stale nack ignored",
                &[("1", "v1"), ("2", "v2")],
                1,
                ("1", Some(""), Some("bad")),
                Reply::Stale,
            ),
            (
                "unknown nonce",
                &[("1", "v1")],
                1,
                ("zz", Some("v1"), None),
                Reply::Stale,
            ),
            (
                "sotw empty nonce after a response",
                &[("1", "v1")],
                1,
                ("", Some(""), None),
                Reply::Request,
            ),
            (
                "delta ack uses sent version",
                &[("1", "v1")],
                8,
                ("1", None, None),
                ack("v1"),
            ),
            (
                "delta ack of an older response",
                &[("1", "v1"), ("2", "v2")],
                8,
                ("1", None, None),
                ack("v1"),
            ),
            (
                "delta nack without ack keeps nothing",
                &[("1", "v1")],
                8,
                ("1", None, Some("no")),
                nack("", "v1", "1", "no"),
            ),
            (
                "delta beyond window",
                &[("1", "v1"), ("2", "v2"), ("3", "v3")],
                2,
                ("1", None, None),
                Reply::Stale,
            ),
        ];
        for (name, sent, window, (nonce, version, error), expect) in cases {
            let mut ledger = AckLedger::default();
            for (n, v) in *sent {
                ledger.sent(n, v, *window);
            }
            let error = error.map(err);
            assert_eq!(
                &ledger.reply(nonce, *version, error.as_ref()),
                expect,
                "{name}"
            );
        }
    }

    #[test]
    fn answered_nonce_becomes_a_plain_request() {
        let mut ledger = AckLedger::default();
        ledger.sent("1", "v1", 1);
        assert_eq!(ledger.reply("1", Some("v1"), None), ack("v1"));
        // Envoy re-sends the latest nonce when only its resource names change.
        assert_eq!(ledger.reply("1", Some("v1"), None), Reply::Request);
        assert_eq!(ledger.acked_version.as_deref(), Some("v1"));
    }

    #[test]
    fn delta_nack_reports_last_acked_version() {
        let mut ledger = AckLedger::default();
        ledger.sent("1", "v1", 8);
        ledger.sent("2", "v2", 8);
        assert_eq!(ledger.reply("1", None, None), ack("v1"));
        assert_eq!(
            ledger.reply("2", None, Some(&err("x"))),
            nack("v1", "v2", "2", "x")
        );
        assert_eq!(
            ledger.last_nack.as_ref().map(|n| n.message.as_str()),
            Some("x")
        );
        assert_eq!(ledger.acked_version.as_deref(), Some("v1"));
    }
}
