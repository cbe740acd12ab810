//! Compiles the .proto files with protox (pure Rust), so building needs no protoc binary.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/cluster.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        .compile_fds(fds)?;
    Ok(())
}
