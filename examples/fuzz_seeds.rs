//! Writes the fuzz targets' fixtures (only when missing: findings are
//! signed by their key) and their seeds (`fuzz/seeds/<target>/`) again,
//! when the harnesses change: `cargo run --example fuzz_seeds`.
//! `tests/fuzz_regressions.rs` runs every seed through its target.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a developer's tool: a failure stops it with the error"
)]

use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use mandate::fuzzing::{EnvoyHarness, ISSUER, SUBJECT, TokenHarness, fuzz_dir};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, date_time_ymd,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("fixtures").join(name)).unwrap()
}

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// A certificate valid 2025 to 2125, so seeds outlive the fuzzer's runs.
fn params(uri: &str, edit: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2125, 1, 1);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    edit(&mut params);
    params
}

fn ca_params(uri: &str) -> CertificateParams {
    params(uri, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.extended_key_usages = vec![];
    })
}

/// The fixtures: a CA for `mandate.local`, the agent's SVID it issued,
/// and a token signing key. Written only when missing.
fn write_fixtures() -> Issuer<'static, KeyPair> {
    let dir = fuzz_dir().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("ca.key.pem");
    if !key_file.exists() {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params("spiffe://mandate.local")
            .self_signed(&ca_key)
            .unwrap();
        let issuer = Issuer::new(ca_params("spiffe://mandate.local"), ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let svid = params(SUBJECT, |_| {})
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let (_, pkcs8) = mandate::credential::SigningKeys::generate_pkcs8().unwrap();
        std::fs::write(dir.join("ca.der"), ca.der()).unwrap();
        std::fs::write(dir.join("svid.der"), svid.der()).unwrap();
        std::fs::write(dir.join("token-key.pk8"), pkcs8).unwrap();
        std::fs::write(&key_file, issuer.key().serialize_pem()).unwrap();
    }
    let key = KeyPair::from_pem(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    Issuer::new(ca_params("spiffe://mandate.local"), key)
}

fn check_request(
    principal: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: principal.into(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: host.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn main() {
    let issuer = write_fixtures();

    // svid_der: the good SVID, the CA itself, leaves that break one rule
    // each, and a good-looking SVID from another CA.
    write("svid_der", "accept-svid.der", fixture("svid.der"));
    write("svid_der", "ca.der", fixture("ca.der"));
    let leaf = |name: &str, uri: &str, edit: fn(&mut CertificateParams)| {
        let key = KeyPair::generate().unwrap();
        let cert = params(uri, edit).signed_by(&key, &issuer).unwrap();
        write("svid_der", name, cert.der());
    };
    leaf("two-uris.der", SUBJECT, |p| {
        p.subject_alt_names.push(SanType::URI(
            "spiffe://mandate.local/agents/b".try_into().unwrap(),
        ))
    });
    leaf("https-uri.der", "https://mandate.local/agents/a", |_| {});
    leaf("root-path.der", "spiffe://mandate.local", |_| {});
    leaf("no-key-usage.der", SUBJECT, |p| p.key_usages = vec![]);
    leaf("leaf-is-ca.der", SUBJECT, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
    });
    leaf("expired.der", SUBJECT, |p| {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    });
    let foreign_key = KeyPair::generate().unwrap();
    let foreign = Issuer::new(ca_params("spiffe://mandate.local"), foreign_key);
    let key = KeyPair::generate().unwrap();
    let cert = params(SUBJECT, |_| {}).signed_by(&key, &foreign).unwrap();
    write("svid_der", "foreign-ca.der", cert.der());

    // token: a valid token and one flaw each.
    let harness = TokenHarness::from_fixtures().unwrap();
    let header = harness.valid_header();
    let claims = harness.valid_claims();
    let with = |value: &Value, key: &str, new: Value| {
        let mut value = value.clone();
        value.as_object_mut().unwrap().insert(key.to_owned(), new);
        value
    };
    write("token", "accept-valid.jwt", harness.sign(&header, &claims));
    let flawed = [
        (
            "expired.jwt",
            &header,
            with(&claims, "exp", json!(mandate::fuzzing::NOW - 31)),
        ),
        (
            "not-yet.jwt",
            &header,
            with(&claims, "nbf", json!(mandate::fuzzing::NOW + 31)),
        ),
        (
            "other-subject.jwt",
            &header,
            with(&claims, "sub", json!("spiffe://mandate.local/agents/x")),
        ),
        (
            "other-audience.jwt",
            &header,
            with(&claims, "aud", json!("spiffe://other/mandate")),
        ),
        (
            "audience-list.jwt",
            &header,
            with(&claims, "aud", json!([ISSUER])),
        ),
        (
            "other-certificate.jwt",
            &header,
            with(&claims, "cnf", json!({ "x5t#S256": "AAAA" })),
        ),
    ];
    for (name, header, claims) in flawed {
        write("token", name, harness.sign(header, &claims));
    }
    let other_header = [
        ("wrong-type.jwt", with(&header, "typ", json!("JWT"))),
        ("unknown-kid.jwt", with(&header, "kid", json!("nokey"))),
        ("alg-hs256.jwt", with(&header, "alg", json!("HS256"))),
    ];
    for (name, header) in other_header {
        write("token", name, harness.sign(&header, &claims));
    }
    let valid = harness.sign(&header, &claims);
    let (unsigned, _) = valid.rsplit_once('.').unwrap();
    write("token", "alg-none.jwt", format!("{unsigned}."));
    write("token", "tampered.jwt", valid.replacen("eyJ", "eyK", 2));
    write("token", "not-a-jws.txt", "a.b.c");

    // envoy_request: the settings byte, then the protobuf.
    let token = harness.sign(&header, &claims);
    let agent = "spiffe://mandate.local/agents/patcher";
    let host = "tools.acme.internal:8443";
    let seeds: [(&str, u8, CheckRequest); 6] = [
        (
            "accept-handbook.bin",
            0b0_0100,
            check_request(
                agent,
                "GET",
                host,
                "/handbook",
                &[("x-mandate-token", &token)],
            ),
        ),
        (
            "accept-repo-query.bin",
            0b1_0100,
            check_request(
                agent,
                "GET",
                host,
                "/repos/acme/pay%20ments/contents/src/lib.rs?ref=main&x=a+b",
                &[("x-mandate-token", &token), ("x-env", "prod")],
            ),
        ),
        (
            "accept-xfcc-bearer.bin",
            0b0_0111,
            check_request(
                "",
                "PUT",
                host,
                "/repos/acme/web/contents/README.md",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    (
                        "x-forwarded-client-cert",
                        &format!(
                            "By=spiffe://mandate.local/envoy;Hash={};URI={agent}",
                            "ab".repeat(32)
                        ),
                    ),
                ],
            ),
        ),
        (
            "dot-segment.bin",
            0b0_0000,
            check_request(agent, "GET", host, "/repos/acme/%2e%2e/contents/x", &[]),
        ),
        (
            "no-route.bin",
            0b0_0000,
            check_request(agent, "GET", host, "/admin", &[]),
        ),
        (
            "no-principal.bin",
            0b0_0000,
            check_request("", "GET", host, "/handbook", &[]),
        ),
    ];
    for (name, flags, request) in seeds {
        write("envoy_request", name, EnvoyHarness::encode(flags, &request));
    }
    let mut raw_headers = check_request(agent, "DELETE", host, "/repos/acme/web", &[]);
    if let Some(http) = raw_headers
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.header_map = Some(HeaderMap {
            headers: vec![HeaderValue {
                key: "X-Mandate-Token".into(),
                raw_value: token.clone().into_bytes(),
                ..Default::default()
            }],
        });
    }
    write(
        "envoy_request",
        "accept-raw-headers.bin",
        EnvoyHarness::encode(0b0_0100, &raw_headers),
    );

    // route_map: the example map, asked for a few routes.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let routes = std::fs::read_to_string(repo.join("examples/envoy/routes.toml")).unwrap();
    write(
        "route_map",
        "accept-example.toml",
        format!(
            "{routes}\0GET tools.acme.internal /repos/acme/payments\n\
             PUT tools.acme.internal /repos/acme/web/contents/a/b\n\
             GET other.host /handbook\nDELETE tools.acme.internal /repos//x\n"
        ),
    );
    write(
        "route_map",
        "bad-template.toml",
        "[[route]]\npath = \"/a/{x}\"\naction = \"read\"\nresource = \"r:{y}\"\n",
    );

    // config: the example, and a small one that sets the tables.
    let example = std::fs::read_to_string(repo.join("mandate.toml.example")).unwrap();
    write("config", "accept-example.toml", &example);
    write(
        "config",
        "accept-tables.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [store]\nurl = \"postgres://u:secret@db/x\"\n\
         [envoy]\ntoken_header = \"x-token\"\naccept_bearer = true\ncontext_headers = [\"x-env\"]\n\
         [audit]\noverflow = \"block\"\nredact_headers = [\"cookie\"]\n",
    );
    write(
        "config",
        "bad-lifetimes.toml",
        "[tokens]\nttl_secs = 0\nkey_overlap_secs = -1\n[server]\nlisten = \"nowhere\"\n",
    );
    write(
        "config",
        "bad-old-layout.toml",
        "listen = \"127.0.0.1:0\"\npolicy_poll_ms = 0\n",
    );
}
