//! BFD, asynchronous mode, single hop (RFC 5880, RFC 5881), so that a standard peer such
//! as FRR's bfdd can be the other end.

pub mod manager;
pub mod packet;
pub mod session;
pub mod transport;
pub mod xsk;
pub mod xsk_transport;
