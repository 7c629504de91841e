//! The fast path against a reference model. `model` says what `x0_forward` must do with a
//! frame given the tables (written from docs/DESIGN.md "The fast path" and the RFCs it
//! cites, not from the BPF code); `frames` and `tables` generate inputs by structure from a
//! seed; `run` loads the real program, installs the tables, runs each frame through
//! BPF_PROG_TEST_RUN and compares the verdict, the one reason counter that moved and the
//! frame out. Policy is off and the FIB fallback too: the model covers routing.

pub mod frames;
pub mod model;
pub mod run;
pub mod tables;
