//! HBONE in: each CONNECT stream on 15008 is one client connection. The authority is where
//! the client meant to go (`VIP:port` or `podIP:port`); the peer certificate says who it is;
//! `baggage` describes its workload. The stream is handed to [`downstream::serve`].

use std::sync::Arc;

use hbone::ca::BoxFuture;
use hbone::headers::{Authority, names, parse_baggage};
use hbone::server::{Accepted, InboundHandler, InboundRequest, Rejected};
use http::HeaderMap;
use tokio::sync::watch;

use crate::downstream;
use crate::pipeline::{Downstream, Proxy};

/// Bytes buffered between the tunnel and the HTTP server of one stream.
const PIPE_BYTES: usize = 256 << 10;

/// The waypoint's CONNECT handler.
pub struct Inbound {
    pub proxy: Arc<Proxy>,
    pub shutdown: watch::Receiver<bool>,
}

impl InboundHandler for Inbound {
    fn handle(&self, r: InboundRequest) -> BoxFuture<'_, Result<Accepted, Rejected>> {
        Box::pin(async move {
            let Authority::Addr(destination) = r.authority else {
                return Err(Rejected::BadRequest(format!(
                    "authority {} is not an address; a waypoint is reached by VIP or pod IP",
                    r.authority
                )));
            };
            let state = self.proxy.store.current();
            if !state.by_port.contains_key(&destination.port())
                && !state.endpoints.contains_key(&destination)
            {
                return Err(Rejected::Unavailable(format!(
                    "{destination} is neither a Service port nor an endpoint this waypoint serves"
                )));
            }
            let baggage = r
                .headers
                .get(names::BAGGAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_baggage(v).ok());
            let down = Arc::new(Downstream {
                peer_identity: r.peer_identity,
                remote: r.peer_addr,
                destination,
                baggage,
                mtls: true,
            });
            let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
            tokio::spawn(downstream::serve(
                self.proxy.clone(),
                down,
                theirs,
                self.shutdown.clone(),
            ));
            Ok(Accepted {
                upstream: Box::new(ours),
                response_headers: HeaderMap::new(),
            })
        })
    }
}
