use super::*;

fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

const MAP: &str = r#"
[[route]]
name = "read repo"
host = "*.tools.internal"
methods = ["GET", "head"]
path = "/repos/{owner}/{name}"
action = "read"
resource = "repo:{owner}/{name}"

[[route]]
path = "/acme.tools.v1.Repos/Get*"
methods = ["POST"]
action = "invoke"
resource = "grpc:acme.tools.v1.Repos"

[[route]]
path = "/files/**"
action = "read"
resource = "files"
resource_type = "Acme::Files"
"#;

#[test]
fn first_matching_rule_wins_with_captures() {
    let map = RouteMap::parse(MAP).unwrap();
    let m = map
        .find(
            "git.tools.internal",
            "HEAD",
            &segments("/repos/acme/payments"),
        )
        .unwrap();
    assert_eq!(m.route, "read repo");
    assert_eq!(m.action, "read");
    assert_eq!(m.resource_type, "Mandate::Resource");
    assert_eq!(m.resource_id, "repo:acme/payments");
    assert_eq!(
        m.params,
        [
            ("owner".to_owned(), "acme".to_owned()),
            ("name".to_owned(), "payments".to_owned())
        ]
    );
}

#[test]
fn host_method_and_shape_must_all_match() {
    let map = RouteMap::parse(MAP).unwrap();
    let path = segments("/repos/acme/payments");
    assert!(map.find("tools.internal", "GET", &path).is_none());
    assert!(map.find("git.tools.internal", "DELETE", &path).is_none());
    assert!(
        map.find("git.tools.internal", "GET", &segments("/repos/acme"))
            .is_none()
    );
    assert!(
        map.find("git.tools.internal", "GET", &segments("/repos/acme/x/y"))
            .is_none()
    );
    assert!(
        map.find("git.tools.internal", "GET", &segments("/repos//x"))
            .is_none()
    );
}

#[test]
fn grpc_paths_and_globs() {
    let map = RouteMap::parse(MAP).unwrap();
    let m = map
        .find("any", "POST", &segments("/acme.tools.v1.Repos/GetRepo"))
        .unwrap();
    assert_eq!(m.action, "invoke");
    assert!(
        map.find("any", "POST", &segments("/acme.tools.v1.Repos/DeleteRepo"))
            .is_none()
    );
    let m = map.find("any", "GET", &segments("/files/a/b/c")).unwrap();
    assert_eq!(m.resource_type, "Acme::Files");
    assert!(map.find("any", "GET", &segments("/files")).is_some());
}

#[test]
fn problems_name_the_rule() {
    let bad = r#"
[[route]]
name = "ok"
path = "/a"
action = "read"
resource = "a"

[[route]]
name = "broken"
path = "repos/{owner"
action = "read"
resource = "repo:{name}"

[[route]]
path = "/x/**/y"
action = ""
resource = "x"
methods = ["G E T"]
"#;
    let problems = RouteMap::parse(bad).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("route 2 (`broken`): path `repos/{owner`")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("route 2 (`broken`): resource `repo:{name}`")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == "route 3: path `/x/**/y`: `**` must be the last segment"),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p == "route 3: `action` is empty"));
    assert!(
        problems
            .iter()
            .any(|p| p == "route 3: method `G E T` is not an HTTP method")
    );
    assert!(!problems.iter().any(|p| p.contains("`ok`")));
}

#[test]
fn unknown_keys_and_bad_templates_are_refused() {
    let problems = RouteMap::parse(
        "[[route]]\npath = \"/a\"\naction = \"read\"\nresource = \"a\"\nmethod = \"GET\"\n",
    )
    .unwrap_err();
    assert!(
        problems[0].contains("unknown field `method`"),
        "{problems:?}"
    );
    for (path, resource, expect) in [
        ("/a/{b}", "x{b", "unclosed `{`"),
        ("/a/{b}", "x}b", "`}` without `{`"),
        ("/a/x{b}", "x", "must be a whole segment"),
        ("/a/{b}/{b}", "x", "appears twice"),
        ("/a/{1b}", "x", "is not a parameter name"),
        ("/a?x=1", "x", "must not hold a query"),
    ] {
        let text =
            format!("[[route]]\npath = \"{path}\"\naction = \"read\"\nresource = \"{resource}\"\n");
        let problems = RouteMap::parse(&text).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{path} {resource}: {problems:?}"
        );
    }
}

#[test]
fn an_empty_capture_never_matches() {
    let map = RouteMap::parse(MAP).unwrap();
    assert!(
        map.find("git.tools.internal", "GET", &segments("/repos/acme/"))
            .is_none()
    );
}
