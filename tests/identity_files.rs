//! The `files` identity source as spiffe-helper or csi-driver-spiffe feed
//! it: PEM files rewritten in place. A good change is taken without a
//! restart; a bad file keeps the previous material and is reported. And the
//! trust policy: a bundle on disk is not enough to be trusted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

#[macro_use]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Leaf, Setup, TRUST_DOMAIN, TestCa, TestServer, client_identity, readyz, try_call};
use mandate::clock::{Clock, ManualClock, SystemClock};
use mandate::identity::{FilesSource, FollowOptions, IdentityFeed, IdentitySource, TrustPolicy};
use time::OffsetDateTime;

/// Writes our SVID and one bundle file per CA under `dir`.
fn write_files(dir: &Path, svid: &Leaf, cas: &[&TestCa]) -> FilesSource {
    let (svid_cert, svid_key) = svid.write(dir, "svid");
    let bundles = cas
        .iter()
        .map(|ca| {
            let path = dir.join(format!("{}.bundle.pem", ca.trust_domain));
            std::fs::write(&path, &ca.pem).unwrap();
            (ca.td(), path)
        })
        .collect();
    FilesSource {
        svid_cert,
        svid_key,
        bundles,
    }
}

async fn follow(files: &FilesSource, trust: TrustPolicy) -> IdentityFeed {
    IdentitySource::Files(files.clone())
        .follow(&FollowOptions {
            trust,
            poll: Some(Duration::from_millis(50)),
            ..FollowOptions::default()
        })
        .await
        .unwrap()
}

/// What refusing a key that does not fit its certificate says.
const MISMATCH: &str = "the private key does not match the SVID's certificate";

fn serving(feed: &IdentityFeed, leaf: &Leaf) -> bool {
    feed.watch.borrow().chain.first() == Some(&leaf.cert)
}

#[tokio::test]
async fn changed_files_are_taken_and_a_bad_file_keeps_the_previous_material() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let first = ca.svid("/mandate");
    let files = write_files(dir.path(), &first, &[&ca]);
    let feed = follow(&files, TrustPolicy::own_only()).await;
    let server = TestServer::start_with(Setup {
        identity: Some((ca, feed.clone())),
        ..Setup::default()
    })
    .await;
    let client = server.ca.identity(&server.ca.svid("/workloads/envoy"));
    assert!(serving(&feed, &first));

    // A renewed SVID is taken.
    let second = server.ca.svid("/mandate");
    second.write(dir.path(), "svid");
    eventually!("the renewed SVID is served", serving(&feed, &second));
    assert_eq!(feed.status.rotations(), 1);
    try_call(&server.addr, &client).await.unwrap();

    // A key that is not a key: refused, reported, the previous stays.
    std::fs::write(&files.svid_key, "not a key\n").unwrap();
    eventually!(
        "the bad key is reported",
        !readyz(&server).await.1["identity"]["last_error"].is_null()
    );
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["identity"]["refused_updates"], 1, "{body}");
    let message = body["identity"]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("svid.key"), "{message}");
    assert!(serving(&feed, &second));
    try_call(&server.addr, &client).await.unwrap();

    // A certificate whose key does not match (the key of another SVID).
    let mismatched = server.ca.svid("/mandate");
    std::fs::write(&files.svid_key, &mismatched.key_pem).unwrap();
    eventually!(
        "the mismatched pair is refused",
        readyz(&server).await.1["identity"]["refused_updates"] == 2
    );
    let (_, body) = readyz(&server).await;
    let message = body["identity"]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains(MISMATCH), "{message}");
    assert!(serving(&feed, &second));

    // Fixed: taken, and the error cleared.
    let third = server.ca.svid("/mandate");
    third.write(dir.path(), "svid");
    eventually!("the fixed SVID is served", serving(&feed, &third));
    let (_, body) = readyz(&server).await;
    assert!(body["identity"]["last_error"].is_null(), "{body}");
    assert_eq!(body["identity"]["rotations"], 2, "{body}");
    try_call(&server.addr, &client).await.unwrap();
}

#[tokio::test]
async fn a_bundle_on_disk_is_trusted_only_when_its_trust_domain_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let partner = TestCa::new("partner.example");
    let ours = TestCa::new(TRUST_DOMAIN);
    let files = write_files(dir.path(), &ours.svid("/mandate"), &[&ours, &partner]);
    let partner_svid = partner.svid("/agents/patcher");

    for (trust, partner_accepted) in [
        (TrustPolicy::own_only(), false),
        (TrustPolicy::allow([ours.td(), partner.td()]), true),
        // Listed without our own: our own callers are refused.
        (TrustPolicy::allow([partner.td()]), true),
    ] {
        let feed = follow(&files, trust.clone()).await;
        let server = TestServer::start_with(Setup {
            identity: Some((ours.duplicate(), feed)),
            ..Setup::default()
        })
        .await;
        let partner_client = client_identity(&partner_svid, &[&partner, &ours]);
        let our_client = client_identity(&ours.svid("/workloads/envoy"), &[&ours]);
        assert_eq!(
            try_call(&server.addr, &partner_client).await.is_ok(),
            partner_accepted,
            "{trust:?}"
        );
        let own_listed = trust.allows(&ours.td(), &ours.td());
        assert_eq!(
            try_call(&server.addr, &our_client).await.is_ok(),
            own_listed,
            "{trust:?}"
        );
        let (_, body) = readyz(&server).await;
        let ignored = &body["identity"]["ignored_trust_domains"];
        match (partner_accepted, own_listed) {
            (false, _) => assert_eq!(*ignored, serde_json::json!(["partner.example"])),
            (true, true) => assert_eq!(*ignored, serde_json::json!([])),
            (true, false) => assert_eq!(*ignored, serde_json::json!(["mandate.local"])),
        }
    }
}

#[tokio::test]
async fn an_svid_not_valid_yet_is_tried_again_until_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let files = write_files(dir.path(), &ca.svid("/mandate"), &[&ca]);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let feed = IdentitySource::Files(files)
        .follow(&FollowOptions {
            trust: TrustPolicy::own_only(),
            poll: Some(Duration::from_millis(50)),
            clock: clock.clone(),
            ..FollowOptions::default()
        })
        .await
        .unwrap();
    // Issued by a CA whose clock runs an hour ahead of ours.
    let early = ca.svid_from(
        "/mandate",
        OffsetDateTime::now_utc() + time::Duration::hours(1),
    );
    early.write(dir.path(), "svid");
    eventually!(
        "the early SVID is refused",
        feed.status.report(&feed.watch.borrow(), 0).refused_updates >= 1
    );
    assert!(!serving(&feed, &early));
    // The files do not change again; our clock catches up.
    clock.advance(2 * 3600);
    eventually!(
        "the same files are taken once valid",
        serving(&feed, &early)
    );
}
