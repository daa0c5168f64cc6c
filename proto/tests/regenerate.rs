//! Regenerates the checked-in Rust from the `.proto` sources and fails on any difference.
//!
//! `PROTO_BLESS=1 cargo test -p proto --test regenerate` rewrites `src/generated/` instead.

use std::path::{Path, PathBuf};

/// Every `.proto` compiled into `src/generated/`, relative to `proto/`.
const PROTOS: &[&str] = &[
    "istio/v1/auth/ca.proto",
    "istio/workload/workload.proto",
    "istio/workload/zds/zds.proto",
    "istio/security/authorization.proto",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out: &Path) -> anyhow::Result<()> {
    let root = crate_dir().join("proto");
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let includes = vec![root, protoc_bin_vendored::include_path()?];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_with_config(config, &protos, &includes)?;
    Ok(())
}

fn listing(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, std::fs::read_to_string(entry.path())?));
    }
    files.sort();
    Ok(files)
}

#[test]
fn checked_in_code_matches_protos() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    generate(tmp.path())?;
    let checked_in = crate_dir().join("src/generated");
    if std::env::var_os("PROTO_BLESS").is_some() {
        std::fs::create_dir_all(&checked_in)?;
        for (name, text) in listing(tmp.path())? {
            std::fs::write(checked_in.join(name), text)?;
        }
        return Ok(());
    }
    let fresh = listing(tmp.path())?;
    let old = listing(&checked_in)?;
    let fresh_names: Vec<&String> = fresh.iter().map(|(n, _)| n).collect();
    let old_names: Vec<&String> = old.iter().map(|(n, _)| n).collect();
    assert_eq!(
        fresh_names, old_names,
        "generated file set differs; run with PROTO_BLESS=1"
    );
    for ((name, a), (_, b)) in fresh.iter().zip(old.iter()) {
        assert!(
            a == b,
            "{name} is stale; run with PROTO_BLESS=1 cargo test -p proto --test regenerate"
        );
    }
    Ok(())
}
