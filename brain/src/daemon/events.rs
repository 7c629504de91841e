//! What the daemon's tasks tell each other, one type per channel.

use std::time::{Duration, Instant};

use x0_proto::{brain::v1 as pb, dataplane::v1 as dpb};

/// The dataplane's streams, for the MAPE-K monitor (dataplane task -> loop).
pub enum Observation {
    Event(dpb::Event),
    Stats(dpb::Stats),
    /// The BFD sessions, and when their counters were read (unix ns: the middle of the
    /// call; the stats' own time is some milliseconds earlier, which is 5 % of BFD's
    /// packets in a second).
    Bfd(Vec<dpb::BfdSession>, u64),
}

/// Work for one neighbour's peer task (loop or relay -> peer).
pub enum ToPeer {
    /// Records to hand over (a new one of ours, one passed on, or the whole database).
    Flood(Vec<pb::SignedRecord>),
    /// Measure the round trip over the open connection (never a handshake).
    Probe,
    /// Our telemetry this interval (only the newest queued is sent).
    Exchange(pb::ExchangeRequest),
}

/// What a peer task learnt about its neighbour's brain (peer -> loop).
pub enum FromPeer {
    /// It took our records: its brain is alive and reachable over the link.
    Answered { router: String, at: Instant },
    /// A latency probe's round trip.
    Rtt {
        router: String,
        rtt: Duration,
        at: Instant,
    },
}

/// Records to flood: `Some(neighbour)` they came from (the service), or `None` (ours).
pub type Flood = (Option<String>, Vec<pb::SignedRecord>);
