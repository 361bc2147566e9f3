//! Compiles `proto/` with protox (pure Rust: no system protoc needed) and tonic-prost-build,
//! keeping the descriptor set for gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    let file = "../proto/sellwindow/v1/sellwindow.proto";
    println!("cargo:rerun-if-changed={proto_dir}");
    let fds = protox::compile([file], [proto_dir])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("sellwindow_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
