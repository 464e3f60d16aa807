//! Compiles `proto/etcd.proto`, the subset of etcd's v3 API the benchmark
//! uses, with protox (no system `protoc`; see
//! docs/decisions/0012-benchmark-driver.md).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/etcd.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let set_path = out_dir.join("etcd_descriptor.bin");
    std::fs::write(&set_path, prost::Message::encode_to_vec(&descriptors))?;
    tonic_build::configure()
        .build_server(false)
        .file_descriptor_set_path(&set_path)
        .skip_protoc_run()
        .compile_protos(&[proto], &["proto"])?;
    Ok(())
}
