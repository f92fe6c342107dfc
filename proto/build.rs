//! Compiles `leaklab/v1/echo.proto` with protox (pure Rust), so building
//! leaklab never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "leaklab/v1/echo.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
