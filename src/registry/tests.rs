use std::path::Path;

use cedar_policy::{EntityUid, EvalResult};

use super::*;
use crate::graph::ResourceHierarchy;
use crate::policy::PolicyEngine;

fn engine() -> PolicyEngine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    PolicyEngine::load(
        &root.join("policies"),
        &root.join("schemas/mandate.cedarschema"),
    )
    .unwrap()
}

fn catalog(text: &str) -> Result<Registry, Vec<String>> {
    let entries = toml::from_str::<Catalog>(text)
        .map_err(|e| vec![e.to_string()])?
        .into_entries()?;
    Registry::new(
        entries,
        &Entities::empty(),
        engine().schema(),
        SensitivityScale::default(),
        "home.example",
        Arc::default(),
    )
}

fn attr(registry: &Registry, uid: &str, name: &str) -> Option<EvalResult> {
    let uid: EntityUid = uid.parse().unwrap();
    registry
        .snapshot()
        .entities()
        .get(&uid)
        .and_then(|e| e.attr(name))
        .map(|v| v.unwrap())
}

const TREE: &str = r#"
[[resources]]
id = "data"
sensitivity = "confidential"
trust_domain = "partner.example"

[[resources]]
id = "data/orders"
parent = "data"

[[resources]]
id = "data/orders/2026"
parent = "data/orders"
sensitivity = 3

[[resources]]
id = "loose"
"#;

#[test]
fn resources_inherit_sensitivity_and_trust_domain_from_the_nearest_ancestor() {
    let registry = catalog(TREE).unwrap();
    let r = |id: &str| format!("Mandate::Resource::\"{id}\"");
    assert_eq!(
        attr(&registry, &r("data/orders"), "sensitivity"),
        Some(EvalResult::Long(2))
    );
    assert_eq!(
        attr(&registry, &r("data/orders/2026"), "sensitivity"),
        Some(EvalResult::Long(3))
    );
    assert_eq!(
        attr(&registry, &r("data/orders/2026"), "trust_domain"),
        Some(EvalResult::String("partner.example".into()))
    );
    // Nothing to inherit: no sensitivity, Mandate's own trust domain.
    assert_eq!(attr(&registry, &r("loose"), "sensitivity"), None);
    assert_eq!(
        attr(&registry, &r("loose"), "trust_domain"),
        Some(EvalResult::String("home.example".into()))
    );
    let snapshot = registry.snapshot();
    assert!(snapshot.within("data/orders/2026", "data"));
    assert!(!snapshot.within("data", "data/orders"));
    assert!(!snapshot.within("loose", "data"));
}

#[test]
fn bad_catalogs_are_refused_with_every_problem_named() {
    let cases = [
        (
            "[[agents]]\nspiffe_id = \"spiffe://x.org/agents/a\"\ngroups = [\"nope\"]\n",
            "group `nope` is not registered",
        ),
        (
            "[[resources]]\nid = \"a\"\nparent = \"b\"\n",
            "parent `b` is not registered",
        ),
        (
            "[[resources]]\nid = \"a\"\nparent = \"b\"\n[[resources]]\nid = \"b\"\nparent = \"a\"\n",
            "resource cycle: a -> b -> a",
        ),
        (
            "[[resources]]\nid = \"a\"\nsensitivity = \"secret\"\n",
            "sensitivity `secret` is not on the scale",
        ),
        (
            "[[resources]]\nid = \"a\"\nsensitivity = 9\n",
            "outside the scale",
        ),
        (
            "[[groups]]\nid = \"g\"\n[[groups]]\nid = \"g\"\n",
            "group `g` is listed twice",
        ),
        (
            "[[agents]]\nspiffe_id = \"spiffe://x.org/a\"\n[[workloads]]\nspiffe_id = \"spiffe://x.org/a\"\n",
            "also registered as a",
        ),
        (
            "[[agents]]\nspiffe_id = \"spiffe://x.org/a\"\nchecksum = \"abc\"\n",
            "must be `sha256:`",
        ),
        (
            "[[agents]]\nspiffe_id = \"not a spiffe id\"\n",
            "is not a SPIFFE ID",
        ),
        (
            "[[resources]]\nid = \"a\"\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
        (
            "[[resources]]\nid = \"a\"\ntrust_domain = \"Bad Domain\"\n",
            "is not a trust domain name",
        ),
    ];
    for (text, expected) in cases {
        let problems = catalog(text).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{text}\n expected `{expected}` in {problems:?}"
        );
    }
    // Two problems at once are both reported.
    let problems = catalog(
        "[[resources]]\nid = \"a\"\nparent = \"x\"\n[[resources]]\nid = \"b\"\nsensitivity = \"nope\"\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

fn allow(_: &Snapshot) -> Result<(), RegistryError> {
    Ok(())
}

#[test]
fn writes_check_existence_references_and_bump_the_revision() {
    let registry = catalog("[[groups]]\nid = \"ops\"\n").unwrap();
    let group = |id: &str| {
        Entry::Group(GroupEntry {
            id: id.into(),
            groups: Default::default(),
        })
    };
    let agent = Entry::Agent(AgentEntry {
        spiffe_id: "spiffe://home.example/agents/a".into(),
        checksum: None,
        owner: None,
        class: Some("coding".into()),
        groups: ["ops".to_owned()].into(),
    });
    let r1 = registry.register(agent.clone(), allow).unwrap();
    assert!(matches!(
        registry.register(agent.clone(), allow),
        Err(RegistryError::AlreadyExists { .. })
    ));
    assert!(matches!(
        registry.update(group("other"), allow),
        Err(RegistryError::NotFound { .. })
    ));
    assert!(matches!(
        registry.remove(Kind::Group, "ops", allow),
        Err(RegistryError::InUse { referents, .. }) if referents == ["agent `spiffe://home.example/agents/a`"]
    ));
    // A refused authorization leaves the registry as it was.
    let refused = registry.register(group("g2"), |_: &Snapshot| {
        Err(RegistryError::Invalid(vec!["no".into()]))
    });
    assert!(refused.is_err());
    assert!(registry.snapshot().get(Kind::Group, "g2").is_none());
    let r2 = registry
        .remove(Kind::Agent, "spiffe://home.example/agents/a", allow)
        .unwrap();
    assert!(r2 > r1);
    registry.remove(Kind::Group, "ops", allow).unwrap();
    assert!(registry.snapshot().list(Kind::Group, None, 10).is_empty());
}

#[test]
fn the_shipped_catalog_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let entries = Catalog::load(&root.join("examples/catalog.toml"))
        .unwrap()
        .into_entries()
        .unwrap();
    let registry = Registry::new(
        entries,
        &Entities::empty(),
        engine().schema(),
        SensitivityScale::default(),
        "mandate.local",
        Arc::default(),
    )
    .unwrap();
    // `repo:acme/payments` has no level of its own: `repos` gives it one.
    assert_eq!(
        attr(
            &registry,
            "Mandate::Resource::\"repo:acme/payments\"",
            "sensitivity"
        ),
        Some(EvalResult::Long(1))
    );
}
