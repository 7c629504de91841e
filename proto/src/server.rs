//! The HTTP/2 limits every x0tta6bl4 gRPC server sets (docs/API.md, "Validation"): set
//! explicitly, because tonic's defaults leave a connection's streams unlimited.

use std::time::Duration;

/// Streams opened on one connection at once.
pub const MAX_STREAMS: u32 = 256;
/// A request's headers at most, however many CONTINUATION frames carry them.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
/// A ping this often, unanswered for as long again, closes a connection whose peer went
/// away or stopped reading (its HTTP/2 stack would answer even if its application did not).
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// `builder` with the limits above.
pub fn limited(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE))
}
