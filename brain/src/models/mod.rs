//! The brain's anomaly models: the telemetry features they read (`features`), the
//! GraphSAGE over the mesh (`graphsage`), and the simple baselines it must beat.

pub mod baselines;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod graphsage;
pub mod metrics;
pub mod store;
pub mod train;
