//! Compiles the gRPC contract in proto/ into Rust (tonic + prost), with a descriptor set for
//! server reflection. protoc comes from the protoc-bin-vendored crate, so no system protoc is
//! needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/radassist/v1/ingest.proto",
        "proto/radassist/v1/worklist.proto",
        "proto/radassist/v1/quality.proto",
        "proto/radassist/v1/models.proto",
    ];
    tonic_prost_build::configure()
        // bytes fields as `bytes::Bytes`: instance chunks are not copied out of the frames.
        .bytes(".")
        .file_descriptor_set_path(out.join("radassist_descriptor.bin"))
        .compile_protos(
            &protos.map(std::path::PathBuf::from),
            &[
                std::path::PathBuf::from("proto"),
                protoc_bin_vendored::include_path()?,
            ],
        )?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
