//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/mandate/v1/authorization.proto",
        "proto/mandate/v1/task.proto",
        "proto/mandate/v1/registry.proto",
        "proto/mandate/v1/approval.proto",
        "proto/mandate/v1/policy.proto",
        "proto/mandate/v1/audit.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Served by gRPC reflection.
    std::fs::write(
        out_dir.join("mandate_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;

    // The SPIFFE Workload API, server and client, for the test agent in
    // tests/common/ only: the library reaches a real agent through the
    // `spiffe` crate and never includes this. Its own directory, because a
    // proto without a package is generated as `_.rs`.
    let workload_dir = out_dir.join("spiffe_workload");
    std::fs::create_dir_all(&workload_dir)?;
    let workload = protox::compile(["spiffe/workload.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .out_dir(&workload_dir)
        .build_server(true)
        .build_client(true)
        .compile_fds(workload)?;
    Ok(())
}
