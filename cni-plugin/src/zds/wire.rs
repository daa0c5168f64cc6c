//! ZDS messages (pure): building requests, encoding them under the 1 KiB limit, decoding the tunnel's messages.

use prost::Message;
use proto::istio::workload::zds::{
    AddWorkload, DelWorkload, KeepWorkload, SnapshotSent, Version, WorkloadInfo, WorkloadRequest,
    WorkloadResponse, ZdsHello, workload_request::Payload,
    workload_response::Payload as RespPayload,
};

/// The tunnel reads with a 1024-byte buffer; every message must be smaller.
pub const MAX_MESSAGE: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message of {0} bytes exceeds the ZDS limit of {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("undecodable {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("unsupported ZDS version {0}")]
    Version(i32),
    #[error("response without an ack")]
    NoAck,
}

/// The workload identity sent with `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
}

pub fn add(w: &Workload) -> WorkloadRequest {
    WorkloadRequest {
        payload: Some(Payload::Add(AddWorkload {
            uid: w.uid.clone(),
            workload_info: Some(WorkloadInfo {
                name: w.name.clone(),
                namespace: w.namespace.clone(),
                service_account: w.service_account.clone(),
            }),
        })),
    }
}

pub fn keep(uid: &str) -> WorkloadRequest {
    WorkloadRequest {
        payload: Some(Payload::Keep(KeepWorkload { uid: uid.into() })),
    }
}

pub fn del(uid: &str) -> WorkloadRequest {
    WorkloadRequest {
        payload: Some(Payload::Del(DelWorkload { uid: uid.into() })),
    }
}

pub fn snapshot_sent() -> WorkloadRequest {
    WorkloadRequest {
        payload: Some(Payload::SnapshotSent(SnapshotSent {})),
    }
}

/// A short name of the request kind (logs).
pub fn kind(req: &WorkloadRequest) -> &'static str {
    match &req.payload {
        Some(Payload::Add(_)) => "add",
        Some(Payload::Keep(_)) => "keep",
        Some(Payload::Del(_)) => "del",
        Some(Payload::SnapshotSent(_)) => "snapshot_sent",
        None => "empty",
    }
}

/// Encodes a request, refusing anything the tunnel could not read.
pub fn encode(req: &WorkloadRequest) -> Result<Vec<u8>, WireError> {
    let buf = req.encode_to_vec();
    if buf.len() >= MAX_MESSAGE {
        return Err(WireError::TooLarge(buf.len()));
    }
    Ok(buf)
}

/// Checks the tunnel's first message.
pub fn decode_hello(buf: &[u8]) -> Result<(), WireError> {
    let hello = ZdsHello::decode(buf).map_err(|e| WireError::Decode {
        what: "hello",
        detail: e.to_string(),
    })?;
    if hello.version != Version::V1 as i32 {
        return Err(WireError::Version(hello.version));
    }
    Ok(())
}

/// Decodes an Ack: `Ok(None)` = ACK, `Ok(Some(error))` = NACK.
pub fn decode_ack(buf: &[u8]) -> Result<Option<String>, WireError> {
    let resp = WorkloadResponse::decode(buf).map_err(|e| WireError::Decode {
        what: "response",
        detail: e.to_string(),
    })?;
    match resp.payload {
        Some(RespPayload::Ack(ack)) if ack.error.is_empty() => Ok(None),
        Some(RespPayload::Ack(ack)) => Ok(Some(ack.error)),
        None => Err(WireError::NoAck),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proto::istio::workload::zds::Ack;

    #[test]
    fn requests_fit_and_round_trip() {
        let w = Workload {
            uid: "0b7c8a5e-1f0e-4b1a-9b7e-3e1f2d4c5b6a".into(),
            name: "x".repeat(253),
            namespace: "n".repeat(63),
            service_account: "s".repeat(253),
        };
        let buf = encode(&add(&w)).unwrap();
        assert!(buf.len() < MAX_MESSAGE);
        let back = WorkloadRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(kind(&back), "add");
        let huge = Workload {
            name: "x".repeat(2000),
            ..w
        };
        assert!(matches!(encode(&add(&huge)), Err(WireError::TooLarge(_))));
        assert_eq!(kind(&del("u")), "del");
        assert_eq!(kind(&keep("u")), "keep");
        assert_eq!(kind(&snapshot_sent()), "snapshot_sent");
    }

    #[test]
    fn hello_and_acks() {
        let hello = ZdsHello { version: 1 }.encode_to_vec();
        assert_eq!(decode_hello(&hello), Ok(()));
        assert_eq!(
            decode_hello(&ZdsHello { version: 0 }.encode_to_vec()),
            Err(WireError::Version(0))
        );
        assert!(decode_hello(&[0xff, 0xff]).is_err());
        let ack = |e: &str| {
            WorkloadResponse {
                payload: Some(RespPayload::Ack(Ack { error: e.into() })),
            }
            .encode_to_vec()
        };
        assert_eq!(decode_ack(&ack("")), Ok(None));
        assert_eq!(decode_ack(&ack("boom")), Ok(Some("boom".into())));
        assert_eq!(decode_ack(&[]), Err(WireError::NoAck));
    }
}
