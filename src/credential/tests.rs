use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header};
use spiffe::SpiffeId;

use super::*;
use crate::clock::ManualClock;
use crate::graph::{Task, TaskState};

const NOW: i64 = 1_800_000_000;

fn id(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://example.org{path}")).unwrap()
}

fn chain() -> Vec<Arc<Task>> {
    let root = Task {
        id: "t1".into(),
        intent: "ship the release".into(),
        delegator: id("/workloads/frontend").into(),
        delegatee: id("/agents/planner").into(),
        originator: "alice".into(),
        parent: None,
        root: "t1".into(),
        depth: 0,
        actions: BTreeSet::from(["read".to_owned()]).into(),
        scope: BTreeSet::from(["repos".to_owned()]).into(),
        max_sensitivity: 1,
        created_at: NOW,
        expires_at: NOW + 3600,
        state: TaskState::Active,
        version: 0,
        scope_digest: String::new(),
    };
    let child = Task {
        id: "t2".into(),
        delegator: id("/agents/planner").into(),
        delegatee: id("/agents/patcher").into(),
        parent: Some("t1".into()),
        depth: 1,
        expires_at: NOW + 120,
        ..root.clone()
    };
    vec![Arc::new(child), Arc::new(root)]
}

struct Fixture {
    clock: Arc<ManualClock>,
    keys: Arc<SigningKeys>,
    tokens: TaskTokens,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(NOW));
    let keys = Arc::new(SigningKeys::ephemeral(
        KeyRotation {
            rotate_after: 600,
            overlap: 300,
        },
        clock.clone(),
    ));
    let tokens = TaskTokens::new(keys.clone(), TokenSettings::default(), clock.clone());
    Fixture {
        clock,
        keys,
        tokens,
    }
}

const CERT: &[u8] = b"the patcher's DER certificate";
const OTHER_CERT: &[u8] = b"someone else's DER certificate";

#[test]
fn a_minted_token_verifies_and_carries_the_chain() {
    let f = fixture();
    let (token, minted) = f.tokens.mint(&chain(), CERT, None, None).unwrap();
    let claims = f
        .tokens
        .verify(&token, &id("/agents/patcher"), Some(CERT))
        .unwrap();
    assert_eq!(claims, minted);
    assert_eq!(claims.task, "t2");
    assert_eq!(claims.sub, "spiffe://example.org/agents/patcher");
    assert_eq!(claims.act.sub, "spiffe://example.org/agents/planner");
    let inner = claims.act.act.as_ref().unwrap();
    assert_eq!(inner.sub, "spiffe://example.org/workloads/frontend");
    assert_eq!(inner.act.as_ref().unwrap().sub, "user:alice");
    assert_eq!(claims.cnf.x5t_s256, thumbprint(CERT));
    // Capped by the task's deadline (120 s), not the default 300 s.
    assert_eq!(claims.exp, NOW + 120);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(TOKEN_TYPE));
    assert_eq!(header.alg, Algorithm::EdDSA);
}

fn refused(f: &Fixture, token: &str) -> &'static str {
    let error = f
        .tokens
        .verify(token, &id("/agents/patcher"), Some(CERT))
        .unwrap_err();
    crate::decision::Reason::from(&error).as_str()
}

#[test]
fn tampering_and_forgery_are_refused() {
    let f = fixture();
    let (token, _) = f.tokens.mint(&chain(), CERT, None, None).unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    // Payload swapped for one naming another task: the signature breaks.
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["task"] = "t1".into();
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&claims).unwrap(),
    );
    assert_eq!(
        refused(&f, &format!("{}.{forged_payload}.{}", parts[0], parts[2])),
        "token-bad-signature"
    );

    // `alg: none` with no signature.
    let none = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"none","typ":"mandate-task+jwt"}"#,
    );
    assert_eq!(
        refused(&f, &format!("{none}.{}.", parts[1])),
        "token-wrong-algorithm"
    );

    // A key we never had.
    let stranger = fixture();
    let (foreign, _) = stranger.tokens.mint(&chain(), CERT, None, None).unwrap();
    assert_eq!(refused(&f, &foreign), "token-unknown-key");

    // Our key, but another `typ`.
    let key = f.keys.current().unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    let wrong_typ = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
    assert_eq!(refused(&f, &wrong_typ), "token-wrong-type");

    assert_eq!(refused(&f, "not a token"), "token-malformed");
    assert_eq!(refused(&f, &"a".repeat(10_000)), "token-malformed");
}

#[test]
fn audience_must_be_ours() {
    let f = fixture();
    let elsewhere = TaskTokens::new(
        f.keys.clone(),
        TokenSettings {
            audience: "another-service".into(),
            ..TokenSettings::default()
        },
        f.clock.clone(),
    );
    let (token, _) = elsewhere.mint(&chain(), CERT, None, None).unwrap();
    assert_eq!(refused(&f, &token), "token-wrong-audience");
}

#[test]
fn time_bounds_follow_the_clock_with_leeway() {
    let f = fixture();
    let (token, claims) = f.tokens.mint(&chain(), CERT, Some(60), None).unwrap();
    f.clock.advance(60 + 30);
    assert!(
        f.tokens
            .verify(&token, &id("/agents/patcher"), Some(CERT))
            .is_ok()
    );
    f.clock.advance(1);
    assert_eq!(refused(&f, &token), "token-expired");

    let f = fixture();
    let (token, _) = f.tokens.mint(&chain(), CERT, None, None).unwrap();
    f.clock.advance(-31);
    assert_eq!(refused(&f, &token), "token-not-yet-valid");
    assert_eq!(claims.exp - claims.iat, 60);
}

#[test]
fn a_token_is_bound_to_its_subject_and_certificate() {
    let f = fixture();
    let (token, _) = f.tokens.mint(&chain(), CERT, None, None).unwrap();
    // Stolen: presented over another workload's connection.
    let err = f
        .tokens
        .verify(&token, &id("/agents/thief"), Some(OTHER_CERT))
        .unwrap_err();
    assert_eq!(
        crate::decision::Reason::from(&err).as_str(),
        "token-subject-mismatch"
    );
    // Right subject name, another certificate.
    let err = f
        .tokens
        .verify(&token, &id("/agents/patcher"), Some(OTHER_CERT))
        .unwrap_err();
    assert_eq!(
        crate::decision::Reason::from(&err).as_str(),
        "token-not-bound"
    );
    // No certificate to check against.
    let err = f
        .tokens
        .verify(&token, &id("/agents/patcher"), None)
        .unwrap_err();
    assert_eq!(
        crate::decision::Reason::from(&err).as_str(),
        "token-not-bound"
    );
}

#[test]
fn retired_keys_verify_during_the_overlap_only() {
    let f = fixture();
    // The root task: its deadline (an hour) outlasts the whole test.
    let root = chain().split_off(1);
    let planner = id("/agents/planner");
    let (old_token, _) = f.tokens.mint(&root, CERT, Some(3600), None).unwrap();
    let old_kid = f.keys.current().unwrap().kid.clone();
    // Past rotate_after: the next mint rotates.
    f.clock.advance(601);
    let (new_token, _) = f.tokens.mint(&root, CERT, Some(3600), None).unwrap();
    let new_kid = f.keys.current().unwrap().kid.clone();
    assert_ne!(old_kid, new_kid);
    assert!(f.tokens.verify(&old_token, &planner, Some(CERT)).is_ok());
    let kids: Vec<String> = f.keys.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [old_kid.clone(), new_kid.clone()]);
    // The overlap (300 s) ends: the old key stops verifying.
    f.clock.advance(300);
    let err = f
        .tokens
        .verify(&old_token, &planner, Some(CERT))
        .unwrap_err();
    assert_eq!(
        crate::decision::Reason::from(&err).as_str(),
        "token-unknown-key"
    );
    assert!(f.tokens.verify(&new_token, &planner, Some(CERT)).is_ok());
}

#[test]
fn keys_persist_with_private_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let keys = SigningKeys::open(dir.path(), KeyRotation::default(), clock.clone()).unwrap();
    let kid = keys.current().unwrap().kid.clone();
    let file = dir.path().join(format!("key-{kid}.json"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let reopened = SigningKeys::open(dir.path(), KeyRotation::default(), clock).unwrap();
    assert_eq!(reopened.current().unwrap().kid, kid);
}
