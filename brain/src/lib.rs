//! x0tta6bl4's brain as a library, in the order it works: link state with the neighbours'
//! brains (`linkstate`), k disjoint paths and the next-hop sets they give the dataplane
//! (`paths`), and the MAPE-K loop that watches the links and acts on what it finds
//! (`mapek`); `daemon` wires them together.

pub mod config;
pub mod daemon;
pub mod discovery;
pub mod linkstate;
pub mod mapek;
pub mod models;
pub mod paths;
