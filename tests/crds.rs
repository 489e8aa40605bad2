//! The committed CRDs are exactly what the Rust types generate.

#[test]
fn committed_crds_match_the_rust_types() {
    let generated = kubilitics_ai::api::crds_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/kubilitics-ai.crds.yaml");
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == committed,
        "crds/ drifted from src/api: run `make crds` and commit the result"
    );
}
