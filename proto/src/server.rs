//! The HTTP/2 limits every x0tta6bl4 gRPC server sets (docs/API.md, "Validation"): set
//! explicitly, because tonic's defaults leave a connection's streams unlimited.

use std::time::Duration;

/// Streams opened on one connection at once.
pub const MAX_STREAMS: u32 = 256;
/// A request's headers at most, however many CONTINUATION frames carry them.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
/// A ping on an idle connection this often finds a peer that went away.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// `builder` with the limits above.
pub fn limited(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
        .http2_keepalive_interval(Some(KEEPALIVE))
}
