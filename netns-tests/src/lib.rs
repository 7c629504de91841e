//! x0tta6bl4's namespace lab: topologies of veth-linked network namespaces running the
//! real `x0-dataplane`, traffic between them, and teardown that survives failed tests.

pub mod abuse;
pub mod bfd_script;
pub mod bird_bfd;
pub mod brains;
pub mod faults;
pub mod frr;
pub mod incidents;
pub mod lab;
pub mod netns;
pub mod pki;
pub mod prometheus;
pub mod random_mesh;
pub mod report;
pub mod routing;
pub mod tools;
pub mod topology;
pub mod traffic;

pub use lab::Lab;
pub use topology::Topology;
