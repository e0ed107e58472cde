//! `kopsci note` against a scripted GitLab API on 127.0.0.1 that checks
//! every request: created once, then edited in place, retries on 429/5xx,
//! truncation, skipped without a token, and the token never printed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Kopsci, Sandbox};
use crate::pipeline::kopsci_outside_ci;

const TOKEN: &str = "glpat-test-SECRET-token-0123";
const NOTES: &str = "/api/v4/projects/42/merge_requests/7/notes";

/// One scripted answer.
struct Reply {
    method: &'static str,
    /// The request path must start with this.
    path: String,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(method: &'static str, path: &str, status: u16, body: serde_json::Value) -> Reply {
    Reply {
        method,
        path: path.to_string(),
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A fake GitLab: answers requests in script order, one connection per
/// request, and records what it was asked. A request that does not match
/// the next scripted answer gets 418 (not retried) and fails the test.
struct FakeGitLab {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
    left: Arc<Mutex<Vec<Reply>>>,
}

impl FakeGitLab {
    fn start(script: Vec<Reply>) -> FakeGitLab {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let left = Arc::new(Mutex::new(script));
        let (s, p, l) = (seen.clone(), problems.clone(), left.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, &s, &p, &l);
            }
        });
        FakeGitLab {
            port,
            seen,
            problems,
            left,
        }
    }

    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v4", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Every scripted answer was asked for, and nothing else.
    #[track_caller]
    fn assert_done(&self) {
        let problems = self.problems.lock().expect("lock");
        assert!(problems.is_empty(), "unexpected requests: {problems:#?}");
        let left = self.left.lock().expect("lock");
        let pending: Vec<String> = left
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(pending.is_empty(), "never requested: {pending:?}");
    }
}

fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    problems: &Mutex<Vec<String>>,
    left: &Mutex<Vec<Reply>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let request = Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };

    let mut problem = None;
    if request.headers.get("private-token").map(String::as_str) != Some(TOKEN) {
        problem = Some("missing or wrong PRIVATE-TOKEN".to_string());
    }
    if request.method != "GET"
        && request.headers.get("content-type").map(String::as_str) != Some("application/json")
    {
        problem = Some("a body without Content-Type: application/json".to_string());
    }
    let next = {
        let mut left = left.lock().expect("lock");
        if left.is_empty() {
            None
        } else {
            Some(left.remove(0))
        }
    };
    let reply = match next {
        Some(r) if r.method == request.method && request.path.starts_with(&r.path) => Some(r),
        Some(r) => {
            problem = Some(format!(
                "expected {} {}, got {} {}",
                r.method, r.path, request.method, request.path
            ));
            None
        }
        None => {
            problem = Some(format!(
                "nothing scripted for {} {}",
                request.method, request.path
            ));
            None
        }
    };
    let (status, extra, body) = match (&problem, reply) {
        (None, Some(r)) => (r.status, r.headers, r.body),
        _ => (418, Vec::new(), "{\"message\":\"unexpected\"}".to_string()),
    };
    if let Some(problem) = problem {
        problems
            .lock()
            .expect("lock")
            .push(format!("{problem}: {request:?}"));
    }
    seen.lock().expect("lock").push(request);
    let mut response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Reports as a dry run leaves them: one cluster with changes and details,
/// one with a removed instance group; `dev-b` never wrote its report.
fn reports() -> Sandbox {
    Sandbox::new()
        .file(
            ".kopsci/reports/dev-a.k8s.example.com/report.json",
            r#"{"format":"kopsci-report/v1","stage":"dryrun","cluster":"dev-a.k8s.example.com","environment":"dev",
                "create":1,"update":2,"delete":0,"changes_pending":true,"removed_instance_groups":[],"failed":null}"#,
        )
        .file(
            ".kopsci/reports/dev-a.k8s.example.com/report.md",
            "**1 to create, 2 to modify, 0 to delete**\n\n```diff\n-kubernetesVersion: 1.33.0\n+kubernetesVersion: 1.34.1\n```\n",
        )
        .file(
            ".kopsci/reports/prod-a.k8s.example.com/report.json",
            r#"{"cluster":"prod-a.k8s.example.com","environment":"prod","create":0,"update":0,"delete":0,
                "changes_pending":true,"removed_instance_groups":["nodes-old"],"failed":null}"#,
        )
}

const CLUSTERS: [&str; 3] = [
    "dev-a.k8s.example.com",
    "dev-b.k8s.example.com",
    "prod-a.k8s.example.com",
];

/// `kopsci note` in a merge-request pipeline of project 42, MR !7.
fn note(sb: &Sandbox, api: &FakeGitLab) -> Kopsci {
    kopsci_outside_ci(sb.path())
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_SOURCE", "merge_request_event")
        .env("CI_API_V4_URL", api.api_url())
        .env("CI_PROJECT_ID", "42")
        .env("CI_MERGE_REQUEST_IID", "7")
        .env("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env(
            "CI_PIPELINE_URL",
            "https://gitlab.example.com/g/fleet/-/pipelines/500",
        )
        .env(
            "CI_JOB_URL",
            "https://gitlab.example.com/g/fleet/-/jobs/900",
        )
        .env("KOPSCI_GITLAB_TOKEN", TOKEN)
        .arg("note")
        .args(CLUSTERS)
}

fn user() -> Reply {
    reply(
        "GET",
        "/api/v4/user",
        200,
        serde_json::json!({"id": 7, "username": "kopsci-bot"}),
    )
}

fn note_json(id: u64, author: u64, body: &str, system: bool) -> serde_json::Value {
    serde_json::json!({"id": id, "body": body, "system": system, "author": {"id": author}})
}

fn posted_body(request: &Seen) -> String {
    let json: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
    json["body"].as_str().expect("body").to_string()
}

#[track_caller]
fn assert_no_token(text: &str) {
    assert!(!text.contains(TOKEN), "the token was printed:\n{text}");
    assert!(
        !text.contains("SECRET"),
        "part of the token was printed:\n{text}"
    );
}

#[test]
fn without_a_token_it_skips_with_one_hint_line() {
    let sb = reports();
    let api = FakeGitLab::start(Vec::new());
    let run = note(&sb, &api)
        .env("KOPSCI_GITLAB_TOKEN", "")
        .run()
        .success();
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "kopsci note: KOPSCI_GITLAB_TOKEN is not set: no merge-request note posted"
        ),
        "{stderr}"
    );
    assert!(api.seen().is_empty());
    // The note is still kept with the reports.
    assert!(
        sb.read(".kopsci/reports/merge-request-note.md")
            .contains("| `dev-a.k8s.example.com` (dev) | 1 to create, 2 to modify, 0 to delete |")
    );
}

#[test]
fn outside_a_merge_request_pipeline_it_skips() {
    let sb = reports();
    let api = FakeGitLab::start(Vec::new());
    let run = note(&sb, &api)
        .env("CI_MERGE_REQUEST_IID", "")
        .run()
        .success();
    assert!(
        run.stderr().contains("not a merge-request pipeline"),
        "{}",
        run.stderr()
    );
    assert!(api.seen().is_empty());
}

#[test]
fn the_note_is_created_once_and_ignores_look_alikes() {
    let sb = reports();
    let marker = "<!-- kopsci-note fleet=kopsci.yaml -->";
    let api = FakeGitLab::start(vec![
        user(),
        reply(
            "GET",
            &format!("{NOTES}?sort=asc&order_by=created_at&per_page=100&page=1"),
            200,
            serde_json::json!([
                note_json(1, 99, &format!("{marker}\ncopied by someone else"), false),
                note_json(2, 7, &format!("{marker}\nsystem"), true),
                note_json(3, 7, "an ordinary comment by the bot", false),
            ]),
        ),
        reply("POST", NOTES, 201, serde_json::json!({"id": 99})),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert_eq!(
        run.stderr().trim(),
        "kopsci note: created note 99 on merge request !7"
    );
    assert_no_token(&run.stdout());
    assert_no_token(&run.stderr());
    let seen = api.seen();
    let body = posted_body(&seen[2]);
    assert!(body.starts_with(marker), "{body}");
    assert!(
        seen[0]
            .headers
            .get("user-agent")
            .is_some_and(|ua| ua.starts_with("kopsci/"))
    );
    insta::assert_snapshot!("note_body", body);
}

#[test]
fn the_note_is_updated_in_place_across_pages() {
    let sb = reports();
    let api = FakeGitLab::start(vec![
        user(),
        reply(
            "GET",
            &format!("{NOTES}?sort=asc&order_by=created_at&per_page=100&page=1"),
            200,
            serde_json::json!([note_json(10, 7, "hello", false)]),
        )
        .header("X-Next-Page", "2"),
        reply(
            "GET",
            &format!("{NOTES}?sort=asc&order_by=created_at&per_page=100&page=2"),
            200,
            serde_json::json!([note_json(
                55,
                7,
                "<!-- kopsci-note fleet=kopsci.yaml -->\nold",
                false
            )]),
        )
        .header("X-Next-Page", ""),
        reply(
            "PUT",
            &format!("{NOTES}/55"),
            200,
            serde_json::json!({"id": 55}),
        ),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert!(
        run.stderr().contains("updated note 55 on merge request !7"),
        "{}",
        run.stderr()
    );
    let seen = api.seen();
    assert!(posted_body(&seen[3]).contains("1 to create, 2 to modify, 0 to delete"));
}

#[test]
fn an_unchanged_note_is_left_alone() {
    let sb = reports();
    // The exact body it would post.
    let probe = FakeGitLab::start(Vec::new());
    let body = note(&sb, &probe).arg("--print").run().success().stdout();
    assert!(probe.seen().is_empty(), "--print posts nothing");
    let api = FakeGitLab::start(vec![
        user(),
        reply(
            "GET",
            NOTES,
            200,
            serde_json::json!([note_json(8, 7, &body, false)]),
        ),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert!(
        run.stderr().contains("note 8 is already up to date"),
        "{}",
        run.stderr()
    );
}

#[test]
fn rate_limits_and_server_errors_are_retried_without_duplicating_the_note() {
    let sb = reports();
    let api = FakeGitLab::start(vec![
        reply(
            "GET",
            "/api/v4/user",
            429,
            serde_json::json!({"message": "429 Too Many Requests"}),
        )
        .header("Retry-After", "0"),
        reply("GET", "/api/v4/user", 502, serde_json::json!({})).header("Retry-After", "0"),
        user(),
        reply("GET", NOTES, 503, serde_json::json!({})).header("Retry-After", "0"),
        reply("GET", NOTES, 200, serde_json::json!([])),
        // The POST may have reached GitLab: it looks again before retrying.
        reply("POST", NOTES, 500, serde_json::json!({})).header("Retry-After", "0"),
        reply("GET", NOTES, 200, serde_json::json!([])),
        reply("POST", NOTES, 201, serde_json::json!({"id": 3})),
    ]);
    let started = Instant::now();
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(run.stderr().contains("created note 3"), "{}", run.stderr());
    assert!(
        run.stderr().contains(
            "GitLab API GET /user: HTTP 429: 429 Too Many Requests; retrying in 0.0s (1/4)"
        ),
        "{}",
        run.stderr()
    );
    assert_no_token(&run.stderr());
}

#[test]
fn a_post_that_reached_gitlab_is_not_repeated() {
    let sb = reports();
    let api = FakeGitLab::start(vec![
        user(),
        reply("GET", NOTES, 200, serde_json::json!([])),
        reply("POST", NOTES, 502, serde_json::json!({})).header("Retry-After", "0"),
        // … but it did create the note: found and updated, not posted twice.
        reply(
            "GET",
            NOTES,
            200,
            serde_json::json!([note_json(
                4,
                7,
                "<!-- kopsci-note fleet=kopsci.yaml -->\npartial",
                false
            )]),
        ),
        reply(
            "PUT",
            &format!("{NOTES}/4"),
            200,
            serde_json::json!({"id": 4}),
        ),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert!(run.stderr().contains("updated note 4"), "{}", run.stderr());
}

#[test]
fn client_errors_fail_at_once_without_printing_the_token() {
    let sb = reports();
    // Even with every log line on, HTTP dumps included.
    for filter in ["trace", "ureq_proto::util=trace,trace"] {
        let api = FakeGitLab::start(vec![reply(
            "GET",
            "/api/v4/user",
            401,
            serde_json::json!({"message": "401 Unauthorized"}),
        )]);
        let run = note(&sb, &api).env("KOPSCI_LOG", filter).run().fails_with(
            1,
            &["GitLab API GET /user: HTTP 401: 401 Unauthorized (is KOPSCI_GITLAB_TOKEN a valid"],
        );
        api.assert_done();
        assert!(
            run.stderr().contains("TRACE"),
            "{filter}: trace logs are on"
        );
        assert_no_token(&run.stdout());
        assert_no_token(&run.stderr());
    }
}

#[test]
fn retries_are_bounded() {
    let sb = reports();
    let api = FakeGitLab::start(
        (0..5)
            .map(|_| {
                reply("GET", "/api/v4/user", 503, serde_json::json!({})).header("Retry-After", "0")
            })
            .collect(),
    );
    note(&sb, &api)
        .run()
        .fails_with(1, &["GitLab API GET /user: HTTP 503 (after 5 attempts)"]);
    api.assert_done();
}

#[test]
fn a_long_note_is_truncated_with_links_to_the_artifacts() {
    let sb = reports().file(
        ".kopsci/reports/prod-a.k8s.example.com/report.md",
        &format!("```diff\n{}```\n", "+ a changed line\n".repeat(5_000)),
    );
    let api = FakeGitLab::start(vec![
        user(),
        reply("GET", NOTES, 200, serde_json::json!([])),
        reply("POST", NOTES, 201, serde_json::json!({"id": 5})),
    ]);
    note(&sb, &api)
        .args(["--max-chars", "5000"])
        .run()
        .success();
    api.assert_done();
    let body = posted_body(&api.seen()[2]);
    assert!(body.chars().count() <= 5000, "{}", body.chars().count());
    assert!(
        body.contains("+kubernetesVersion: 1.34.1"),
        "small details stay: {body}"
    );
    assert!(
        body.contains("- `prod-a.k8s.example.com`: details left out ([report](https://gitlab.example.com/g/fleet/-/jobs/900/artifacts/file/.kopsci/reports/prod-a.k8s.example.com/report.md))"),
        "{body}"
    );
    assert!(
        body.contains("**Truncated** to stay under GitLab's note size limit: the full reports are in [the job's artifacts](https://gitlab.example.com/g/fleet/-/jobs/900/artifacts/browse/.kopsci/reports)"),
        "{body}"
    );
}

#[test]
fn unreachable_gitlab_is_retried_then_reported() {
    let sb = reports();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let api = FakeGitLab::start(Vec::new());
    let started = Instant::now();
    let run = note(&sb, &api)
        .env("CI_API_V4_URL", format!("http://127.0.0.1:{port}/api/v4"))
        .run()
        .fails_with(1, &["GitLab API GET /user: ", "(after 5 attempts)"]);
    // 1 + 2 + 4 + 8 seconds of back-off.
    assert!(started.elapsed() >= Duration::from_secs(15));
    assert_no_token(&run.stderr());
}
