//! Compiles the .proto files with protox (pure Rust), so building needs no protoc binary, and
//! keeps the descriptor set for gRPC server reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/cluster.proto", "proto/control.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("livecdn_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        .compile_fds(fds)?;
    Ok(())
}
