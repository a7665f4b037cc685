//! Compiles `proto/tarefas/v1/*.proto` (at the workspace root) into Rust with
//! prost. The `.proto` files are parsed by protox, a pure-Rust compiler, so no
//! `protoc` binary is needed.

use std::path::PathBuf;

/// The proto files compiled into this crate, relative to the proto root.
const PROTOS: &[&str] = &["tarefas/v1/messages.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");

    for proto in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            proto_root.join(proto).display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");

    // protox reports errors with file, line and column; show them as-is.
    let fds = protox::compile(PROTOS, [&proto_root]).map_err(|e| format!("{e:?}"))?;

    prost_build::Config::new()
        // Ordered maps: deterministic encoding and Debug output.
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
