//! The checked-in CRDs are the ones the types generate. `UPDATE_CRDS=1 cargo test -p control-plane --test crds`
//! rewrites them.

use std::path::Path;

#[test]
fn crds_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/meshctl.dev.yaml");
    let generated = control_plane::manifest::extensions::crds_yaml();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is not what the types generate; run `UPDATE_CRDS=1 cargo test -p control-plane --test crds`",
        path.display()
    );
}
