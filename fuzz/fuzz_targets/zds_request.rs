//! ZDS records as the node tunnel reads them: decode, validate against any fd count, feed the
//! session rules. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&fds, records)) = data.split_first() else { return };
    let mut session = ztunnel::inpod::session::Session::default();
    for record in records.split(|b| *b == 0xff) {
        if let Ok(req) = proto::istio::workload::zds::WorkloadRequest::decode(record) {
            if let Ok(r) = ztunnel::inpod::session::validate(req, usize::from(fds % 3)) {
                let _ = session.on_request(r);
            }
        }
    }
});
