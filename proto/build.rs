//! Compiles `proto/atoll.proto` with protox (pure Rust, no system `protoc`),
//! then generates prost messages and tonic services (real and madsim flavours).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/atoll.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let set_path = out_dir.join("atoll_descriptor.bin");
    std::fs::write(&set_path, prost::Message::encode_to_vec(&descriptors))?;
    tonic_build::configure()
        .file_descriptor_set_path(&set_path)
        .skip_protoc_run()
        .compile_protos(&[proto], &["proto"])?;
    Ok(())
}
