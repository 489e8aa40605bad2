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
    for file in [
        "kubilitics-ai.crds.yaml",
        "kubilitics-ai.identity-policy.yaml",
    ] {
        let a = std::fs::read_to_string(format!("{root}/crds/{file}")).unwrap();
        let b =
            std::fs::read_to_string(format!("{root}/charts/kubilitics-ai/crds/{file}")).unwrap();
        assert!(
            a == b,
            "charts/kubilitics-ai/crds/{file} drifted from crds/: run `make crds`"
        );
    }
}

/// The identity policy builds `request.userInfo` into exactly the string the
/// webhook stamps (`identity_annotation`): the two must change together.
#[test]
fn identity_policy_builds_the_stamped_form() {
    let policy = kubilitics_ai::api::IDENTITY_POLICY_YAML;
    let stamped =
        kubilitics_ai::safety::authz::identity_annotation(&kubilitics_ai::api::Requester {
            username: "U".into(),
            uid: Some("I".into()),
            groups: vec!["G1".into(), "G2".into()],
            ..Default::default()
        });
    assert_eq!(
        stamped,
        r#"{"username":"U","uid":"I","groups":["G1","G2"]}"#
    );
    for piece in [
        r#"'{"username":"' + request.userInfo.username + '","uid":"' + variables.uid +"#,
        r#"'","groups":[' + variables.groups.map(g, '"' + g + '"').join(',') + ']}'"#,
    ] {
        assert!(policy.contains(piece), "policy lost {piece}");
    }
}
