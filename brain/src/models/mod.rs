//! The brain's anomaly models: the telemetry features they read (`features`), the
//! GraphSAGE over the mesh (`graphsage`), the random forest (`forest`), the simple
//! baselines, their files (`store`), and how they are judged (`dataset`, `evaluate`);
//! root-cause analysis over the same telemetry (`rca`).

pub mod baselines;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod forest;
pub mod graphsage;
pub mod grouping;
pub mod metrics;
pub mod rca;
pub mod store;
pub mod train;
