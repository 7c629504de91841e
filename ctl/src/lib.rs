//! x0ctl as a library: connecting to a dataplane's API (for the CLI, the lab and tests).

pub mod bfd;
pub mod client;
pub mod commits;
pub mod incidents;
pub mod routes;
