//! Compiles proto/**/*.proto with protox (pure Rust: no protoc needed on build machines)
//! and keeps the descriptor set for gRPC server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "x0tta6bl4/dataplane/v1/dataplane.proto",
    "x0tta6bl4/brain/v1/brain.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("x0tta6bl4_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A signed record is flooded to every neighbour and held by every brain: shared
        // buffers (bytes::Bytes) make those copies reference counts, not 6 kB memcpys.
        .bytes(".x0tta6bl4.brain.v1.SignedRecord")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
