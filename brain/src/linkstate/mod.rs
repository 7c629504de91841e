//! Link state: signed records of each router's adjacencies and prefixes, the database of
//! the newest per router, the mesh they describe, and the gRPC service neighbours flood
//! into ([LINK_STATE.md](../../../docs/LINK_STATE.md)).

pub mod lsdb;
pub mod lsp;
pub mod mesh;
pub mod server;
pub mod state;
pub mod topology;
