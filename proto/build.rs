//! Compiles `leaklab/v1/echo.proto`, and the part of gRPC's channelz service
//! leaklab reads, with protox (pure Rust), so building leaklab never needs a
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "leaklab/v1/echo.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    // The same descriptors for the load generator's dynamic path: a `[call]` to the toy server needs no --proto.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("echo_descriptor_set.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `Bytes` payloads clone by reference count: the load generator sends one
        // buffer with every request, and the server echoes it without a copy.
        .bytes(".")
        .compile_fds(descriptors)?;

    let channelz = "grpc/channelz/v1/channelz.proto";
    println!("cargo:rerun-if-changed={channelz}");
    // The server too: tests answer as a runtime's channelz service would.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile([channelz], ["."])?)?;
    Ok(())
}
