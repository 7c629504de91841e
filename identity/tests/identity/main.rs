//! Integration tests: a lab CA in a temporary directory, real TCP and Unix sockets.

mod ca;
mod common;
mod svid;
mod tls;
mod verify;
mod watcher;
mod workload;
