//! x0tta6bl4's gRPC contracts. The `.proto` files under `proto/` are the source of truth
//! (orchestrators in other languages compile them too); this crate compiles them once for
//! every Rust component.

pub mod server;
pub mod status;

/// The dataplane's control API, version 1.
pub mod dataplane {
    pub mod v1 {
        tonic::include_proto!("x0tta6bl4.dataplane.v1");
    }
}

/// Link-state exchange between brains, and what operators ask a brain, version 1.
pub mod brain {
    pub mod v1 {
        tonic::include_proto!("x0tta6bl4.brain.v1");
    }
}

/// Every file descriptor of this crate's packages, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/x0tta6bl4_descriptor.bin"));

/// The fully qualified name of the dataplane service (`/<this>/<Method>` are its paths).
pub const DATAPLANE_SERVICE: &str = "x0tta6bl4.dataplane.v1.Dataplane";
pub const BRAIN_SERVICE: &str = "x0tta6bl4.brain.v1.Brain";
