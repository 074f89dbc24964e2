//! A validly signed task token whose header and claims the fuzzer edits:
//! it must verify exactly when what it carries is valid. A finding is
//! kept as the token it signed, under `regressions/token/`.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::{NOW, TokenHarness};
use serde_json::{Map, Value, json};

static HARNESS: LazyLock<TokenHarness> = LazyLock::new(|| {
    TokenHarness::new(
        include_bytes!("../fixtures/token-key.pk8"),
        include_bytes!("../fixtures/svid.der"),
    )
    .expect("fuzz/fixtures")
});

#[derive(Arbitrary, Debug)]
struct Input {
    edits: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
struct Edit {
    in_header: bool,
    field: Field,
    value: NewValue,
}

#[derive(Arbitrary, Debug)]
enum Field {
    Alg,
    Typ,
    Kid,
    Iss,
    Sub,
    Aud,
    Iat,
    Nbf,
    Exp,
    Jti,
    Task,
    Intent,
    Act,
    Cnf,
    AgentProof,
    Crit,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum NewValue {
    Remove,
    Null,
    Bool(bool),
    Int(i64),
    /// Seconds from the harness's now: the edges of the time checks.
    NearNow(i16),
    Float(f64),
    Text(String),
    Texts(Vec<String>),
    Object(Vec<(String, String)>),
    /// An actor chain this deep.
    Actors(u8),
}

fn key(field: &Field) -> String {
    match field {
        Field::Alg => "alg",
        Field::Typ => "typ",
        Field::Kid => "kid",
        Field::Iss => "iss",
        Field::Sub => "sub",
        Field::Aud => "aud",
        Field::Iat => "iat",
        Field::Nbf => "nbf",
        Field::Exp => "exp",
        Field::Jti => "jti",
        Field::Task => "task",
        Field::Intent => "intent",
        Field::Act => "act",
        Field::Cnf => "cnf",
        Field::AgentProof => "agent_proof",
        Field::Crit => "crit",
        Field::Other(name) => name,
    }
    .to_owned()
}

fn value(new: &NewValue) -> Option<Value> {
    Some(match new {
        NewValue::Remove => return None,
        NewValue::Null => Value::Null,
        NewValue::Bool(b) => json!(b),
        NewValue::Int(i) => json!(i),
        NewValue::NearNow(delta) => json!(NOW + i64::from(*delta)),
        NewValue::Float(f) => json!(f),
        NewValue::Text(s) => json!(s),
        NewValue::Texts(v) => json!(v),
        NewValue::Object(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        ),
        NewValue::Actors(depth) => (0..*depth).fold(json!({ "sub": "user:alice" }), |inner, i| {
            json!({ "sub": format!("spiffe://mandate.local/agents/a{i}"), "act": inner })
        }),
    })
}

fuzz_target!(|input: Input| {
    let mut header = HARNESS.valid_header();
    let mut claims = HARNESS.valid_claims();
    for edit in &input.edits {
        let target = if edit.in_header {
            &mut header
        } else {
            &mut claims
        };
        let Some(object) = target.as_object_mut() else {
            continue;
        };
        match value(&edit.value) {
            Some(v) => object.insert(key(&edit.field), v),
            None => object.remove(&key(&edit.field)),
        };
    }
    if let Err(violation) = HARNESS.check_signed(&header, &claims) {
        panic!("{violation}");
    }
});
