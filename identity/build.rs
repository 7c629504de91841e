//! Compiles the SPIFFE Workload API (proto/workload.proto) for the `workload-server` feature only,
//! with protox (pure Rust, no protoc), server side only. Without the feature this does nothing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    #[cfg(feature = "workload-server")]
    {
        let fds = protox::compile(["workload.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(false)
            .build_server(true)
            // Every RPC but FetchX509SVID answers Unimplemented, as a test double may.
            .generate_default_stubs(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
