//! x0tta6bl4's dataplane as a library: the daemon, its CLI, the lab and (later) the gRPC
//! service are thin layers over these functions.

pub mod api;
pub mod bfd;
mod bfd_peers;
pub mod bpffs;
pub mod commits;
pub mod config;
pub mod control;
pub mod core;
pub mod counters;
pub mod daemon;
pub mod events;
pub mod explain;
pub mod health;
pub mod host;
pub mod kernel_fib;
pub mod map_sizes;
pub mod mapped_array;
pub mod metrics;
pub mod netlink;
pub mod policy;
pub mod state;
pub mod tables;
pub mod v4_direct;
pub mod v4_filter;

pub use crate::core::{AttachMode, Dataplane, XdpModeChoice};

/// The compiled XDP programs (xdp/programs, built by build.rs).
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/x0-xdp"));

/// Where maps are pinned unless the config says otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/x0tta6bl4";
