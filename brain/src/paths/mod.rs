//! From the mesh to routes: k disjoint paths per destination (searched block by block),
//! loop-free alternates, the plan of next hops, and the difference pushed to the dataplane.

pub mod blocks;
pub mod disjoint;
pub mod lfa;
pub mod plan;
pub mod push;
pub mod testgraph;
