//! x0tta6bl4's brain as a library: the mesh as a graph, k disjoint paths from this router
//! to every other, loop-free alternates, and the next-hop sets they give the dataplane.

pub mod analyze;
pub mod blocks;
pub mod config;
pub mod daemon;
pub mod disjoint;
pub mod execute;
pub mod guard;
pub mod knowledge;
pub mod lfa;
pub mod lsdb;
pub mod lsp;
pub mod mapek;
pub mod mesh;
pub mod monitor;
pub mod plan;
pub mod push;
pub mod server;
pub mod testgraph;
pub mod topology;
