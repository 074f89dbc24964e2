use super::*;

fn schema() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mandate.cedarschema")
}

#[test]
fn ids_come_from_annotations_else_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let read = r#"permit (principal, action == Mandate::Action::"read", resource);"#;
    std::fs::write(
        dir.path().join("x.cedar"),
        format!("{read}\n\n@id(\"named\")\n{read}\n{read}\n"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("team")).unwrap();
    std::fs::write(
        dir.path().join("team/x.cedar"),
        format!("// team\n{read}\n"),
    )
    .unwrap();

    let engine = PolicyEngine::load(dir.path(), &schema()).unwrap();
    let mut ids: Vec<String> = engine
        .policies()
        .policies()
        .map(|p| p.id().to_string())
        .filter(|id| !id.starts_with(guards::RESERVED_PREFIX))
        .collect();
    ids.sort();
    assert_eq!(ids, ["named", "team/x.0", "x.0", "x.2"]);
    let x0 = engine.source_of(&PolicyId::new("x.0")).unwrap();
    assert!(x0.ends_with("x.cedar:1"), "{x0}");
    let named = engine.source_of(&PolicyId::new("named")).unwrap();
    assert!(named.ends_with("x.cedar:3"), "{named}");
    let x2 = engine.source_of(&PolicyId::new("x.2")).unwrap();
    assert!(x2.ends_with("x.cedar:5"), "{x2}");
    let team = engine.source_of(&PolicyId::new("team/x.0")).unwrap();
    assert!(team.ends_with("team/x.cedar:2"), "{team}");
}

#[test]
fn guards_are_built_in_and_their_ids_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::load(dir.path(), &schema()).unwrap();
    let ids: Vec<String> = engine
        .policies()
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    assert!(
        ids.contains(&"mandate.guard.task-not-active".to_owned()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"mandate.guard.action-not-in-task.read".to_owned()),
        "{ids:?}"
    );
    assert!(
        !ids.iter()
            .any(|id| id.ends_with(".check") || id.ends_with(".delegate"))
    );
    assert_eq!(
        engine
            .source_of(&PolicyId::new("mandate.guard.task-not-active"))
            .as_deref(),
        Some("<built-in>")
    );

    std::fs::write(
        dir.path().join("sneaky.cedar"),
        r#"@id("mandate.guard.task-not-active") permit (principal, action, resource);"#,
    )
    .unwrap();
    let err = PolicyEngine::load(dir.path(), &schema()).unwrap_err();
    assert!(err.to_string().contains("is reserved"), "{err}");
}

#[test]
fn duplicate_ids_are_refused_with_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let named = r#"@id("same") permit (principal, action, resource);"#;
    std::fs::write(dir.path().join("a.cedar"), named).unwrap();
    std::fs::write(dir.path().join("b.cedar"), format!("\n{named}")).unwrap();
    let err = PolicyEngine::load(dir.path(), &schema()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("b.cedar:2:1: policy id `same` is already used at"),
        "{message}"
    );
    assert!(message.contains("a.cedar:1"), "{message}");
}

#[test]
fn tasks_cannot_be_declared_in_the_static_entities() {
    let dir = tempfile::tempdir().unwrap();
    let entities = dir.path().join("entities.json");
    std::fs::write(
        &entities,
        r#"[{"uid": {"type": "Mandate::Task", "id": "t1"}, "attrs": {
            "intent": "x", "delegator": "a", "delegatee": "b", "originator": "c",
            "depth": 0, "actions": [], "scope": [], "max_sensitivity": 0,
            "expires_at": 0, "state": "active"}, "parents": []}]"#,
    )
    .unwrap();
    let engine = PolicyEngine::load(dir.path(), &schema()).unwrap();
    let err = engine.load_entities(&entities).unwrap_err();
    assert!(err.to_string().contains("live state only"), "{err}");
    // Registry types belong in the catalog, where they are checked.
    std::fs::write(
        &entities,
        r#"[{"uid": {"type": "Mandate::Resource", "id": "r"}, "attrs": {}, "parents": []}]"#,
    )
    .unwrap();
    let err = engine.load_entities(&entities).unwrap_err();
    assert!(err.to_string().contains("belong in the catalog"), "{err}");
}

#[test]
fn a_user_schema_entity_loads_without_the_schema_actions() {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.cedarschema");
    let mut text = std::fs::read_to_string(schema()).unwrap();
    text.push_str("\nnamespace Acme { entity Doc { title: String }; }\n");
    std::fs::write(&schema_file, text).unwrap();
    let entities = dir.path().join("entities.json");
    std::fs::write(
        &entities,
        r#"[{"uid": {"type": "Acme::Doc", "id": "d"}, "attrs": {"title": "x"}, "parents": []}]"#,
    )
    .unwrap();
    let engine = PolicyEngine::load(dir.path(), &schema_file).unwrap();
    let loaded = engine.load_entities(&entities).unwrap();
    let uids: Vec<String> = loaded.iter().map(|e| e.uid().to_string()).collect();
    assert_eq!(uids, [r#"Acme::Doc::"d""#]);
}

#[test]
fn the_shipped_policies_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(&root.join("policies"), &schema()).unwrap();
    assert!(!engine.is_empty());
    assert!(engine.action("check").is_some());
    assert!(engine.action("no-such-action").is_none());
}

#[test]
fn approval_annotations_apply_only_to_forbids_with_the_known_value() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| std::fs::write(dir.path().join("a.cedar"), text).unwrap();
    write(
        r#"@id("p") permit (principal, action, resource);
@id("needs") @mandate_outcome("needs_approval")
forbid (principal, action == Mandate::Action::"delete", resource);"#,
    );
    let engine = PolicyEngine::load(dir.path(), &schema()).unwrap();
    assert!(engine.lifted_by_approval(&cedar_policy::PolicyId::new("needs")));
    assert!(!engine.lifted_by_approval(&cedar_policy::PolicyId::new("p")));
    assert!(
        engine
            .policies_without_approval()
            .policy(&cedar_policy::PolicyId::new("needs"))
            .is_none()
    );

    write(r#"@mandate_outcome("needs_approval") permit (principal, action, resource);"#);
    let err = PolicyEngine::load(dir.path(), &schema()).unwrap_err();
    assert!(
        err.to_string().contains("only applies to a `forbid`"),
        "{err}"
    );
    assert!(err.to_string().contains("a.cedar:1"), "{err}");

    write(r#"@mandate_outcome("maybe") forbid (principal, action, resource);"#);
    let err = PolicyEngine::load(dir.path(), &schema()).unwrap_err();
    assert!(err.to_string().contains("is not known"), "{err}");
}

#[test]
fn policies_are_split_by_the_actions_their_scope_can_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(&root.join("policies"), &schema()).unwrap();
    let ids = |action: &str| -> Vec<String> {
        let uid = engine.action(action).unwrap();
        engine
            .policies_for(uid)
            .0
            .policies()
            .map(|p| p.id().to_string())
            .collect()
    };
    let read = ids("read");
    assert!(read.contains(&"anyone-reads-handbook".to_owned()));
    assert!(read.contains(&"operators-manage-resources".to_owned()));
    assert!(read.contains(&"mandate.guard.action-not-in-task.read".to_owned()));
    assert!(!read.contains(&"mandate.guard.action-not-in-task.write".to_owned()));
    assert!(!read.contains(&"operators-manage-registry".to_owned()));
    // `action in [...]` goes to each listed action only.
    let catalog_only = "operators-group-only-from-the-catalog".to_owned();
    assert!(ids("register").contains(&catalog_only));
    assert!(ids("update").contains(&catalog_only));
    assert!(!ids("remove").contains(&catalog_only));
    assert!(ids("revoke").contains(&"operators-revoke".to_owned()));
    assert!(!ids("delete").contains(&"operators-revoke".to_owned()));
    // Every policy is somewhere.
    let all: std::collections::HashSet<String> = engine
        .actions
        .values()
        .flat_map(|uid| {
            engine
                .policies_for(uid)
                .0
                .policies()
                .map(|p| p.id().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(all.len(), engine.len());
}

#[test]
fn an_unconstrained_action_scope_goes_to_every_action() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        r#"@id("any") forbid (principal, action, resource is Mandate::Resource) when { resource has owner && resource.owner == "x" };"#,
    )
    .unwrap();
    let engine = PolicyEngine::load(dir.path(), &schema()).unwrap();
    for action in ["read", "delete", "check", "register"] {
        let uid = engine.action(action).unwrap();
        assert!(
            engine
                .policies_for(uid)
                .0
                .policy(&cedar_policy::PolicyId::new("any"))
                .is_some(),
            "{action}"
        );
    }
}

#[test]
fn split_sets_drop_the_action_scope_but_keep_ids_and_conditions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(&root.join("policies"), &schema()).unwrap();
    let read = engine.action("read").unwrap();
    let (split, _) = engine.policies_for(read);
    let guard = cedar_policy::PolicyId::new("mandate.guard.task-not-active");
    let original = engine.policies().policy(&guard).unwrap();
    let specialised = split.policy(&guard).unwrap();
    assert!(matches!(
        original.action_constraint(),
        cedar_policy::ActionConstraint::In(_)
    ));
    assert_eq!(
        specialised.action_constraint(),
        cedar_policy::ActionConstraint::Any
    );
    assert_eq!(specialised.effect(), original.effect());
    let condition = |p: &cedar_policy::Policy| p.to_json().unwrap()["conditions"].clone();
    assert_eq!(condition(specialised), condition(original));
    let lifted = cedar_policy::PolicyId::new("restricted-data-needs-approval");
    assert_eq!(
        split.policy(&lifted).unwrap().annotation("mandate_outcome"),
        Some("needs_approval")
    );
}
