//! The approvals inbox and the trail picture in a real headless browser
//! (Debian's chromium driven by playwright-core), against a real server
//! over real TLS: the browser talks to a small front proxy (as oauth2-proxy
//! would: it names the user in `x-forwarded-user`) which reaches the UI over
//! mTLS with its SVID. Also the webhook, to a real local HTTP listener.
//!
//! The harness installs what it needs, pinned: playwright-core from npm
//! into `target/tmp/ui-browser`, and chromium with apt-get when
//! `/usr/bin/chromium` is missing. If either cannot be installed the test
//! fails saying what to install; it never skips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::audit::{delegate, metric};
use common::party::{PATCHER, call, party, root_task, scope, token};
use common::{Leaf, Setup, TestServer};
use mandate::api::v1::{DecideApprovalRequest, Decision};
use mandate::ui::{UiSettings, WebhookSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// playwright-core, exactly.
const PLAYWRIGHT_CORE: &str = "1.65.1";
/// Debian's chromium as this machine's apt offers it (`apt-cache policy
/// chromium`); installed only when `/usr/bin/chromium` is missing.
const CHROMIUM_DEB: &str = "chromium=156.0.8078.129-1~deb12u1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the browser harness and its artifacts (screenshots) live.
fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-browser")
}

fn run(command: &mut Command) -> bool {
    command.status().is_ok_and(|s| s.success())
}

/// Installs (once) and returns the script that drives the browser.
fn browser_harness() -> PathBuf {
    let dir = browser_dir();
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    assert!(
        run(Command::new("node").arg("--version")),
        "the browser tests need Node.js 20 and npm: `apt-get install -y nodejs npm`"
    );
    if !Path::new(CHROMIUM).exists() {
        let installed = run(Command::new("apt-get").args(["install", "-y", CHROMIUM_DEB]))
            || (run(Command::new("apt-get").arg("update"))
                && run(Command::new("apt-get").args(["install", "-y", CHROMIUM_DEB])));
        assert!(
            installed && Path::new(CHROMIUM).exists(),
            "the browser tests need Debian's chromium at {CHROMIUM}: `apt-get install -y {CHROMIUM_DEB}` (or the version `apt-cache policy chromium` offers, then update CHROMIUM_DEB in tests/ui_browser.rs)"
        );
    }
    let package = dir.join("node_modules/playwright-core/package.json");
    let have = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if have.as_deref() != Some(PLAYWRIGHT_CORE) {
        let ok = run(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--save-exact",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("playwright-core@{PLAYWRIGHT_CORE}")));
        assert!(
            ok && package.exists(),
            "cannot install playwright-core@{PLAYWRIGHT_CORE} from npm into {}: `npm install --prefix {} playwright-core@{PLAYWRIGHT_CORE}`",
            dir.display(),
            dir.display()
        );
    }
    let script = dir.join("browser.mjs");
    std::fs::write(&script, include_str!("ui/browser.mjs")).unwrap();
    script
}

/// Runs browser `steps`; returns the script's results.
async fn browse(script: &Path, steps: serde_json::Value) -> serde_json::Value {
    let job = serde_json::json!({ "chromium": CHROMIUM, "steps": steps }).to_string();
    let mut command = Command::new("node");
    command
        .arg(script)
        .arg(job)
        .current_dir(script.parent().unwrap());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the browser script failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(result.get("error").is_none(), "browser: {result}");
    result
}

/// A front proxy for one user: plain HTTP for the browser on loopback, mTLS
/// with `leaf` to the UI, the user in `x-forwarded-user` (any the browser
/// sent is dropped, as oauth2-proxy does).
async fn front_proxy(server: &TestServer, leaf: &Leaf, user: &str) -> String {
    let ui = server.server.ui_addr().unwrap();
    let client = page_client(server, Some(leaf));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new((client, format!("https://{ui}"), user.to_owned()));
    let app = axum::Router::new().fallback(forward).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

type ProxyState = Arc<(reqwest::Client, String, String)>;

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (client, upstream, user) = &*state;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "x-forwarded-user" | "content-length" | "connection"
        ) {
            out = out.header(name, value);
        }
    }
    let answer = out
        .header("x-forwarded-user", user)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "transfer-encoding" | "connection" | "content-length"
        ) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}

/// An HTTP/1.1 client of the page presenting `leaf` (no certificate when
/// `None`) that does not follow redirects, so a test sees them.
fn page_client(server: &TestServer, leaf: Option<&Leaf>) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(common::tls::client(server, leaf, &[b"http/1.1"]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A webhook receiver that answers 500 to the first call and 200 after:
/// the bodies it got.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut calls = 0;
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then as many body bytes as content-length says.
            let body = loop {
                let n = tcp.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break None;
                }
                buffer.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buffer).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body.to_owned());
                    }
                }
            };
            calls += 1;
            let status = if calls == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if let Some(body) = body
                && calls > 1
            {
                seen.lock().unwrap().push(body);
            }
            let _ = tcp
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (format!("http://{addr}/hooks/approvals"), bodies)
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approvers_decide_in_the_browser_and_see_the_trail() {
    let started = Instant::now();
    let script = browser_harness();
    let artifacts = browser_dir().join("artifacts");
    let (hook_url, hook_bodies) = webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let frontend_id =
        mandate::identity::SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap();
    let server = TestServer::start_with(Setup {
        decision_log: Some(dir.path().join("decisions.jsonl")),
        ui: Some(UiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxies: vec![frontend_id],
            user_header: "x-forwarded-user".into(),
            dev_login: false,
            dev_principal: None,
            public_url: "https://approvals.example".into(),
            webhook: Some(WebhookSettings {
                url: hook_url,
                attempts: 3,
                first_backoff: Duration::from_millis(100),
                timeout: Duration::from_secs(2),
                poll: Duration::from_millis(100),
            }),
        }),
        ..Setup::default()
    })
    .await;
    // The front proxy is the approval front end of the example catalog.
    let proxy_leaf = server.ca.svid("/workloads/frontend");
    let carol = front_proxy(&server, &proxy_leaf, "carol").await;
    let bob = front_proxy(&server, &proxy_leaf, "bob").await;

    // A three-level chain: patcher, reviewer, tester.
    let mut approvals = party(&server, "/workloads/frontend").await.approvals;
    let root = root_task(
        &server,
        PATCHER,
        scope(&["read", "write", "delete"], &["repos"], 1, 3600),
    )
    .await
    .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let patcher_token = token(&mut patcher, &root).await;
    assert_eq!(
        call(&mut patcher, &patcher_token, "read", "repo:acme/payments")
            .await
            .decision,
        Decision::Allow as i32
    );
    let child = delegate(
        &mut patcher,
        &root,
        "spiffe://mandate.local/agents/reviewer",
        &["read"],
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let reviewer_token = token(&mut reviewer, &child).await;
    assert_eq!(
        call(&mut reviewer, &reviewer_token, "read", "repo:acme/payments")
            .await
            .decision,
        Decision::Allow as i32
    );
    assert_eq!(
        call(
            &mut reviewer,
            &reviewer_token,
            "write",
            "repo:acme/payments"
        )
        .await
        .decision,
        Decision::Deny as i32
    );
    let grandchild = delegate(
        &mut reviewer,
        &child,
        "spiffe://mandate.local/agents/tester",
        &["read"],
    )
    .await;
    let mut tester = party(&server, "/agents/tester").await;
    let tester_token = token(&mut tester, &grandchild).await;
    assert_eq!(
        call(&mut tester, &tester_token, "read", "repo:acme/payments")
            .await
            .decision,
        Decision::Allow as i32
    );

    // The patcher wants to delete: a human must approve.
    let asked = call(&mut patcher, &patcher_token, "delete", "repo:acme/payments").await;
    assert_eq!(asked.decision, Decision::NeedsApproval as i32, "{asked:?}");
    let approval = asked.approval_id.clone();

    // The webhook hears of it (after one refused attempt, retried).
    let hook: serde_json::Value = wait_for("the webhook call", || {
        hook_bodies
            .lock()
            .unwrap()
            .first()
            .map(|b| serde_json::from_str(b).unwrap())
    })
    .await;
    assert_eq!(hook["approval_id"], approval.as_str(), "{hook}");
    assert_eq!(
        hook["url"],
        format!("https://approvals.example/approvals/{approval}"),
        "{hook}"
    );
    assert_eq!(
        hook["summary"],
        format!("{PATCHER} wants to delete repo:acme/payments for alice: fix the payments build"),
        "{hook}"
    );
    assert_eq!(hook["on_behalf_of"], "alice");
    assert_eq!(
        metric(
            &server,
            "mandate_ui_webhook_failures_total{outcome=\"retried\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &server,
            "mandate_ui_webhook_failures_total{outcome=\"dropped\"}"
        )
        .await,
        0.0
    );

    // The pending approval is on carol's inbox.
    let row = format!("tr.approval[data-approval-id=\"{approval}\"]");
    let inbox = browse(
        &script,
        serde_json::json!([
            { "goto": format!("{carol}/?state=pending") },
            { "wait": row },
            { "text": row, "as": "row" },
            { "text": "[data-testid=user]", "as": "user" },
        { "text": format!("{row} td.recent"), "as": "recent" },
            { "screenshot": artifacts.join("inbox.png") },
        ]),
    )
    .await;
    let text = inbox["row"].as_str().unwrap();
    for part in [
        "pending",
        PATCHER,
        "delete",
        "repo:acme/payments",
        "internal",
        "code",
        "fix the payments build",
        "alice",
    ] {
        assert!(text.contains(part), "`{part}` not in the inbox row: {text}");
    }
    assert_eq!(inbox["user"], "carol");
    // The chain up to the user, and the task's latest calls (newest first).
    assert!(text.contains("alice → /agents/patcher"), "{text}");
    assert_eq!(inbox["recent"], "delete read", "{inbox}");

    // Bob is neither the originator nor an approver: the page refuses...
    let refused = browse(
        &script,
        serde_json::json!([
            { "goto": format!("{bob}/approvals/{approval}") },
            { "wait": "[data-testid=approve]" },
            { "click": "[data-testid=approve]" },
            { "text": "[data-testid=notice]", "as": "notice" },
            { "text": "[data-testid=state]", "as": "state" },
        ]),
    )
    .await;
    assert_eq!(
        refused["statuses"],
        serde_json::json!([200, 403]),
        "{refused}"
    );
    let notice = refused["notice"].as_str().unwrap();
    assert!(notice.contains("may not `approve`"), "{notice}");
    assert_eq!(refused["state"], "pending");
    // ... and so does the API, for the same user through the same front end.
    let status = approvals
        .decide_approval(DecideApprovalRequest {
            approval_id: approval.clone(),
            approve: true,
            valid_for_seconds: 600,
            approver: "bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A POST without the page's CSRF token is refused, as is a user header
    // from a workload that is not a configured front proxy.
    let proxy = reqwest::Client::new();
    let forged = proxy
        .post(format!("{carol}/approvals/{approval}/decide"))
        .form(&[("csrf", "forged"), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let agent = page_client(&server, Some(&server.ca.svid("/agents/patcher")));
    let ui = server.server.ui_addr().unwrap();
    let not_proxy = agent
        .get(format!("https://{ui}/"))
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(not_proxy.status(), 403);
    assert_eq!(
        call(&mut patcher, &patcher_token, "delete", "repo:acme/payments")
            .await
            .decision,
        Decision::NeedsApproval as i32
    );

    // Carol approves on the page; the chain up to alice is shown.
    let approved = browse(
        &script,
        serde_json::json!([
            { "goto": format!("{carol}/approvals/{approval}") },
            { "wait": "[data-testid=approve]" },
            { "text": "[data-testid=chain]", "as": "chain" },
            { "screenshot": artifacts.join("approval.png") },
            { "click": "[data-testid=approve]" },
            { "text": "[data-testid=notice]", "as": "notice" },
            { "text": "[data-testid=state]", "as": "state" },
        ]),
    )
    .await;
    let chain = approved["chain"].as_str().unwrap();
    assert!(
        chain.contains("alice") && chain.contains(PATCHER),
        "{chain}"
    );
    assert_eq!(
        approved["statuses"],
        serde_json::json!([200, 303, 200]),
        "{approved}"
    );
    assert_eq!(approved["notice"], "Approved.");
    assert_eq!(approved["state"], "approved");
    // The agent's next call is allowed.
    assert_eq!(
        call(&mut patcher, &patcher_token, "delete", "repo:acme/payments")
            .await
            .decision,
        Decision::Allow as i32
    );

    // The inbox follows another approver live: a second request, denied
    // over gRPC while carol's page is open, changes state on her page.
    let second = call(&mut patcher, &patcher_token, "delete", "repo:acme/web").await;
    assert_eq!(second.decision, Decision::NeedsApproval as i32);
    let ready = browser_dir().join("live-ready");
    let _ = std::fs::remove_file(&ready);
    let live = {
        let script = script.clone();
        let (row, carol) = (
            format!("tr.approval[data-approval-id=\"{}\"]", second.approval_id),
            carol.clone(),
        );
        let ready = ready.clone();
        tokio::spawn(async move {
            browse(
                &script,
                serde_json::json!([
                    { "goto": format!("{carol}/") },
                    { "wait": format!("{row}[data-state=pending]") },
                    { "touch": ready },
                    { "wait": format!("{row}[data-state=denied]"), "timeout": 15000 },
                ]),
            )
            .await
        })
    };
    wait_for("the page with the pending request", || {
        ready.exists().then_some(())
    })
    .await;
    approvals
        .decide_approval(DecideApprovalRequest {
            approval_id: second.approval_id.clone(),
            approve: false,
            valid_for_seconds: 0,
            approver: "carol".into(),
        })
        .await
        .unwrap();
    let live = live.await.unwrap();
    assert_eq!(
        live["statuses"],
        serde_json::json!([200]),
        "no reload: {live}"
    );

    // The trail picture of the three-level chain; a click on the denied
    // call shows its decision record.
    let trail = browse(
        &script,
        serde_json::json!([
            { "goto": format!("{carol}/trail/{root}") },
            { "wait": "[data-testid=trail-svg]" },
            { "data": "g[data-testid=task]", "as": "tasks" },
            { "text": "svg", "as": "svg" },
            { "tap": "rect.call.deny" },
            { "wait": "#record dl" },
            { "text": "#record", "as": "record" },
            { "screenshot": artifacts.join("trail.png") },
        ]),
    )
    .await;
    let tasks = trail["tasks"].as_array().unwrap();
    let counts: Vec<(String, String, String, String)> = tasks
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap().to_owned();
            (s("taskId"), s("allow"), s("deny"), s("needsApproval"))
        })
        .collect();
    let row = |id: &str, a: &str, d: &str, n: &str| {
        (id.to_owned(), a.to_owned(), d.to_owned(), n.to_owned())
    };
    assert_eq!(
        counts,
        vec![
            // read, delete once approved; the refused delete asked twice
            // and the one on repo:acme/web.
            row(&root, "2", "0", "3"),
            row(&child, "1", "1", "0"),
            row(&grandchild, "1", "0", "0"),
        ],
        "{trail}"
    );
    let svg = trail["svg"].as_str().unwrap();
    for agent in [
        PATCHER,
        "spiffe://mandate.local/agents/reviewer",
        "spiffe://mandate.local/agents/tester",
    ] {
        assert!(svg.contains(agent), "{agent} not on the picture");
    }
    let record = trail["record"].as_str().unwrap();
    for part in [
        "deny",
        "write",
        "spiffe://mandate.local/agents/reviewer",
        "mandate.guard.action-not-in-task",
    ] {
        assert!(
            record.contains(part),
            "`{part}` not in the record: {record}"
        );
    }
    // Tokens and checksums are never shown.
    for page in [&trail["svg"], &trail["record"]] {
        assert!(!page.as_str().unwrap().contains(&patcher_token));
    }
    println!("ui browser test: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dev_login_says_so_and_believes_no_header() {
    let server = TestServer::start_with(Setup {
        ui: Some(UiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxies: Vec::new(),
            user_header: "x-forwarded-user".into(),
            dev_login: true,
            dev_principal: Some(
                mandate::identity::SpiffeId::new("spiffe://mandate.local/workloads/frontend")
                    .unwrap(),
            ),
            public_url: "https://127.0.0.1".into(),
            webhook: None,
        }),
        ..Setup::default()
    })
    .await;
    let base = format!("https://{}", server.server.ui_addr().unwrap());
    let browser = page_client(&server, None);
    // Without a login, a user header names nobody: off to the login form.
    let first = browser
        .get(format!("{base}/"))
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()["location"], "/dev-login");
    let login = browser
        .post(format!("{base}/dev-login"))
        .form(&[("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_owned();
    let inbox = browser
        .get(format!("{base}/"))
        .header("cookie", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), 200);
    assert_eq!(
        inbox.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("default-src 'none'")
    );
    let page = inbox.text().await.unwrap();
    assert!(
        page.contains("data-testid=\"dev-banner\"") && page.contains("DEV LOGIN"),
        "{page}"
    );
    assert!(page.contains("<b>alice</b>"), "{page}");
    // A made-up cookie is no login.
    let forged = browser
        .get(format!("{base}/"))
        .header("cookie", "mandate_dev_user=Y2Fyb2w.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    // A workload SVID that is no configured proxy gets nothing, header or not.
    let agent = page_client(&server, Some(&server.ca.svid("/agents/patcher")));
    let refused = agent
        .get(format!("{base}/"))
        .header("x-forwarded-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
