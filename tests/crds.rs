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

#[test]
fn chart_crds_are_the_committed_crds() {
    let root = env!("CARGO_MANIFEST_DIR");
    let a = std::fs::read_to_string(format!("{root}/crds/kubilitics-ai.crds.yaml")).unwrap();
    let b = std::fs::read_to_string(format!(
        "{root}/charts/kubilitics-ai/crds/kubilitics-ai.crds.yaml"
    ))
    .unwrap();
    assert!(
        a == b,
        "charts/kubilitics-ai/crds drifted from crds/: run `make crds`"
    );
}
