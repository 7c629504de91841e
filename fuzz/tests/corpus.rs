//! Replays every committed input of each fuzz target (fuzz/corpus/<target>/, grown by
//! `cargo fuzz run`, and the crashes it found, turned into regression inputs) through the
//! same function the fuzzer drives.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target}: {} panicked", path.display());
        n += 1;
    }
    assert!(n > 0, "{target}: an empty corpus at {}", dir.display());
    println!("{target}: {n} inputs replayed");
}

#[test]
fn bfd_packet_corpus() {
    replay("bfd_packet", x0_fuzz::bfd_packet);
}

#[test]
fn link_state_record_corpus() {
    replay("link_state_record", x0_fuzz::link_state_record);
}

#[test]
fn dataplane_config_corpus() {
    replay("dataplane_config", x0_fuzz::dataplane_config);
}

#[test]
fn brain_config_corpus() {
    replay("brain_config", x0_fuzz::brain_config);
}

#[test]
fn api_request_corpus() {
    replay("api_request", x0_fuzz::api_request);
}
