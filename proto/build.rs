//! Compiles `leaklab/v1/echo.proto` with protox (pure Rust), so building
//! leaklab never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "leaklab/v1/echo.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `Bytes` payloads clone by reference count: the load generator sends one
        // buffer with every request, and the server echoes it without a copy.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
