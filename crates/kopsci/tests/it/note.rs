//! `kopsci note` against a scripted GitLab API on 127.0.0.1
//! (`support::gitlab`) that checks every request: created once, then edited
//! in place, retries on 429/5xx, truncation, skipped without a token, the
//! token never printed nor sent anywhere but the API's origin, answers that
//! are not the note refused, a hanging server given up on, and report text
//! that cannot mention anyone or break the note. And what the note says:
//! deletions first whatever the budget, clusters that left the fleet, and
//! which clusters the fleet applies without a click after merge.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::{Kopsci, Run, Sandbox};
use crate::pipeline::kopsci_outside_ci;
use crate::support::gitlab::{
    FakeGitLab, HangingServer, Reply, Seen, TOKEN, bot_user as user, echo, gitlab_job, reply,
};

const NOTES: &str = "/api/v4/projects/42/merge_requests/7/notes";

/// The fleet the reports are of: `dev` is applied without a click.
const FLEET: &str = "\
templates: [templates]
environments:
  dev:
    auto_apply: true
  prod:
    needs: [dev]
clusters:
  - {name: dev-a.k8s.example.com, environment: dev}
  - {name: dev-b.k8s.example.com, environment: dev}
  - {name: prod-a.k8s.example.com, environment: prod}
";

/// Reports as a dry run leaves them: one cluster with changes and details,
/// one with a removed instance group; `dev-b` never wrote its report.
fn reports() -> Sandbox {
    Sandbox::new()
        .file("kopsci.yaml", FLEET)
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
    gitlab_job(sb.path(), api, "merge_request_event", 500)
        .env("CI_MERGE_REQUEST_IID", "7")
        .arg("note")
        .args(CLUSTERS)
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

/// Page `page` of the merge request's notes, answering `notes`.
fn notes_page(page: u32, notes: serde_json::Value) -> Reply {
    reply(
        "GET",
        &format!("{NOTES}?sort=asc&order_by=created_at&per_page=100&page={page}"),
        200,
        notes,
    )
}

/// `kopsci note --print ARGS…` outside CI, in `sb`.
fn print_note(sb: &Sandbox, args: &[&str]) -> Run {
    kopsci_outside_ci(sb.path())
        .args(["note", "--print"])
        .args(args)
        .run()
}

/// The note `kopsci note --print ARGS… CLUSTERS…` prints, succeeding.
#[track_caller]
fn printed_note(sb: &Sandbox, args: &[&str]) -> String {
    print_note(sb, &[args, &CLUSTERS[..]].concat())
        .success()
        .stdout()
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
    run.assert_stderr_has("not a merge-request pipeline");
    assert!(api.seen().is_empty());
}

#[test]
fn the_note_is_created_once_and_ignores_look_alikes() {
    let sb = reports();
    let marker = "<!-- kopsci-note fleet=kopsci.yaml -->";
    let api = FakeGitLab::start(vec![
        user(),
        notes_page(
            1,
            serde_json::json!([
                note_json(1, 99, &format!("{marker}\ncopied by someone else"), false),
                note_json(2, 7, &format!("{marker}\nsystem"), true),
                note_json(3, 7, "an ordinary comment by the bot", false),
            ]),
        ),
        echo("POST", NOTES, 201, serde_json::json!({"id": 99})),
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
        notes_page(1, serde_json::json!([note_json(10, 7, "hello", false)]))
            .header("X-Next-Page", "2"),
        notes_page(
            2,
            serde_json::json!([note_json(
                55,
                7,
                "<!-- kopsci-note fleet=kopsci.yaml -->\nold",
                false
            )]),
        )
        .header("X-Next-Page", ""),
        echo(
            "PUT",
            &format!("{NOTES}/55"),
            200,
            serde_json::json!({"id": 55}),
        ),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    run.assert_stderr_has("updated note 55 on merge request !7");
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
    run.assert_stderr_has("note 8 is already up to date");
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
        echo("POST", NOTES, 201, serde_json::json!({"id": 3})),
    ]);
    let started = Instant::now();
    let run = note(&sb, &api).run().success();
    api.assert_done();
    assert!(started.elapsed() < Duration::from_secs(10));
    run.assert_stderr_has("created note 3");
    run.assert_stderr_has(
        "GitLab API GET /user: HTTP 429: 429 Too Many Requests; retrying in 0.0s (1/4)",
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
        echo(
            "PUT",
            &format!("{NOTES}/4"),
            200,
            serde_json::json!({"id": 4}),
        ),
    ]);
    let run = note(&sb, &api).run().success();
    api.assert_done();
    run.assert_stderr_has("updated note 4");
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
        echo("POST", NOTES, 201, serde_json::json!({"id": 5})),
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

/// A second listener that must never hear from kopsci.
fn elsewhere() -> FakeGitLab {
    FakeGitLab::start(Vec::new())
}

#[test]
fn the_token_never_follows_a_redirect_to_another_host() {
    let sb = reports();
    for (status, method, path) in [
        (302, "GET", "/api/v4/user"),
        (301, "GET", "/api/v4/user"),
        (307, "POST", NOTES),
        (308, "POST", NOTES),
    ] {
        let other = elsewhere();
        let target = format!("{}/api/v4/user?token=leak", other.origin());
        let redirect =
            reply(method, path, status, serde_json::json!({})).header("Location", &target);
        let script = if method == "GET" {
            vec![redirect]
        } else {
            vec![
                user(),
                reply("GET", NOTES, 200, serde_json::json!([])),
                redirect,
            ]
        };
        let api = FakeGitLab::start(script);
        let run = note(&sb, &api).run().fails_with(
            1,
            &[
                &format!("GitLab API {method} /"),
                &format!(
                    "HTTP {status}: a redirect to {}/api/v4/user, not followed",
                    other.origin()
                ),
                &format!("sends the token only to {}", api.origin()),
            ],
        );
        api.assert_done();
        assert_eq!(
            other.connections(),
            0,
            "{status}: the other host was contacted: {:?}",
            other.seen()
        );
        assert!(!run.stderr().contains("leak"), "the query is not shown");
        assert_no_token(&run.stderr());
    }
}

#[test]
fn a_same_host_redirect_is_not_followed_either() {
    let sb = reports();
    let api = FakeGitLab::start(vec![
        reply("GET", "/api/v4/user", 302, serde_json::json!({}))
            .header("Location", "/api/v4/elsewhere"),
    ]);
    note(&sb, &api).run().fails_with(
        1,
        &["HTTP 302: a redirect to /api/v4/elsewhere, not followed"],
    );
    // Exactly one request: the redirect was not followed on the same host.
    api.assert_done();
    assert_eq!(api.seen().len(), 1);
}

#[test]
fn a_created_note_must_be_the_note() {
    let sb = reports();
    for (answer, fragment) in [
        // A 2xx without the note.
        (
            reply("POST", NOTES, 201, serde_json::json!({"id": 5})),
            "HTTP 201 but the response is not the note kopsci created",
        ),
        // What a redirected POST followed as a GET would return: a list.
        (
            reply("POST", NOTES, 200, serde_json::json!([])),
            "HTTP 200 but the response is not the note kopsci created",
        ),
        // A note, but not with the text sent.
        (
            reply(
                "POST",
                NOTES,
                201,
                serde_json::json!({"id": 5, "body": "something else"}),
            ),
            "HTTP 201 but note 5 in the response does not hold the text kopsci sent",
        ),
        // A login page from a proxy.
        (
            reply("POST", NOTES, 200, serde_json::json!({})).raw("<html>sign in</html>"),
            "HTTP 200 but the response is not JSON",
        ),
    ] {
        let api = FakeGitLab::start(vec![
            user(),
            reply("GET", NOTES, 200, serde_json::json!([])),
            answer,
        ]);
        let run = note(&sb, &api).run().fails_with(
            1,
            &[
                "GitLab API POST /projects/42/merge_requests/7/notes: ",
                fragment,
            ],
        );
        // Not retried: nothing suggests a second POST would fare better.
        api.assert_done();
        assert!(!run.stderr().contains("created note"), "{}", run.stderr());
    }
}

#[test]
fn an_edited_note_must_be_the_note() {
    let sb = reports();
    let marker = "<!-- kopsci-note fleet=kopsci.yaml -->";
    let api = FakeGitLab::start(vec![
        user(),
        reply(
            "GET",
            NOTES,
            200,
            serde_json::json!([note_json(55, 7, &format!("{marker}\nold"), false)]),
        ),
        reply(
            "PUT",
            &format!("{NOTES}/55"),
            200,
            serde_json::json!({"id": 56, "body": "x"}),
        ),
    ]);
    note(&sb, &api).run().fails_with(
        1,
        &["GitLab API PUT /projects/42/merge_requests/7/notes/55: HTTP 200 but the response is not the note kopsci edited (note 55)"],
    );
    api.assert_done();
}

#[test]
fn a_listing_that_is_not_a_list_is_an_error_not_an_empty_page() {
    let sb = reports();
    // Were it read as "no notes", a second note would be posted.
    let api = FakeGitLab::start(vec![
        user(),
        reply("GET", NOTES, 200, serde_json::json!({"message": "hi"})),
    ]);
    note(&sb, &api)
        .run()
        .fails_with(1, &["HTTP 200 but the response is not a list"]);
    api.assert_done();
}

#[test]
fn a_hanging_gitlab_is_given_up_within_the_retry_window() {
    let sb = reports();
    let hanging = HangingServer::start();
    let api = FakeGitLab::start(Vec::new());
    let run = note(&sb, &api)
        .env("CI_API_V4_URL", hanging.api_url())
        .run()
        .fails_with(
            1,
            &[
                "GitLab API GET /user: ",
                "gave up after",
                "the time kopsci allows",
            ],
        );
    let stderr = run.stderr();
    // The window, not the attempt count, ended it: fewer than five attempts,
    // each of which reached the server and timed out.
    let attempts: usize = stderr
        .split("(after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    assert!((1..5).contains(&attempts), "{stderr}");
    assert_eq!(hanging.requests(), attempts, "{stderr}");
    assert!(
        stderr.to_lowercase().contains("timeout") || stderr.contains("timed out"),
        "{stderr}"
    );
    assert_no_token(&stderr);
}

#[test]
fn clusters_are_names_never_paths() {
    let sb = reports().file("etc/report.json", r#"{"cluster":"x"}"#);
    for bad in [
        "../etc",
        "a/b",
        "/etc",
        "..",
        "dev-a.k8s.example.com/../../etc",
        "Dev\u{1b}[31m",
    ] {
        let run = print_note(&sb, &["--report-dir", ".kopsci/reports", bad])
            .fails_with(64, &["invalid cluster name"]);
        assert!(
            !run.stderr().contains('\u{1b}'),
            "control characters are escaped"
        );
        assert!(run.stdout().is_empty());
    }
}

#[test]
fn a_report_for_another_cluster_is_shown_as_failed() {
    // prod-a's report copied into dev-a's directory.
    let sb = reports().file(
        ".kopsci/reports/dev-a.k8s.example.com/report.json",
        r#"{"cluster":"prod-a.k8s.example.com","environment":"prod","create":0,"update":0,"delete":0,"changes_pending":false}"#,
    );
    let body = printed_note(&sb, &[]);
    assert!(
        body.contains("| `dev-a.k8s.example.com` (dev) | :x: **failed**: .kopsci/reports/dev-a.k8s.example.com/report.json: the report is for cluster 'prod-a.k8s.example.com', not 'dev-a.k8s.example.com': refused |"),
        "{body}"
    );
}

#[test]
fn report_text_cannot_mention_anyone_run_quick_actions_or_break_the_note() {
    let sb = reports()
        .file(
            ".kopsci/reports/dev-b.k8s.example.com/report.json",
            r#"{"cluster":"dev-b.k8s.example.com","environment":"dev @devs","failed":"template says @all look at #1 and !2","failed_step":"render ~urgent"}"#,
        )
        .file(
            ".kopsci/reports/dev-b.k8s.example.com/report.md",
            "@all please\n</details>\n<!-- kopsci-note fleet=kopsci.yaml -->\n/approve\n/merge\n<img src=https://tracker.example/p.gif>\n```\n/close\n",
        );
    let body = printed_note(&sb, &[]);
    for forbidden in [
        "@all",
        "@devs",
        "#1",
        "!2",
        "~urgent",
        "<img",
        "\n/approve",
        "\n/merge",
        "\n/close",
    ] {
        assert!(!body.contains(forbidden), "{forbidden:?} in:\n{body}");
    }
    // The marker appears once, first: a report cannot plant a second one.
    assert_eq!(body.matches("<!-- kopsci-note").count(), 1, "{body}");
    // dev-a's details and dev-b's: each opened and closed once.
    assert_eq!(body.matches("<details>").count(), 2, "{body}");
    assert_eq!(body.matches("</details>").count(), 2, "{body}");
    assert!(body.ends_with("</sub>\n"), "{body}");
}

#[test]
fn two_hundred_changed_clusters_stay_under_the_budget_and_are_all_named() {
    let mut sb = Sandbox::new();
    let diff = format!(
        "```diff\n{}```\n",
        "-  maxSize: 2\n+  maxSize: 5\n".repeat(200)
    );
    let mut names = Vec::new();
    for i in 0..200 {
        let env = ["dev", "staging", "prod"][i % 3];
        let name = format!("{env}-{i:03}.k8s.example.com");
        sb = sb
            .file(
                &format!(".kopsci/reports/{name}/report.json"),
                &format!(
                    r#"{{"cluster":"{name}","environment":"{env}","create":1,"update":2,"delete":0,"changes_pending":true}}"#
                ),
            )
            .file(&format!(".kopsci/reports/{name}/report.md"), &diff);
        names.push(name);
    }
    let api = FakeGitLab::start(vec![
        user(),
        reply("GET", NOTES, 200, serde_json::json!([])),
        echo("POST", NOTES, 201, serde_json::json!({"id": 12})),
    ]);
    note(&sb, &api).args(&names[..]).run().success();
    api.assert_done();
    let body = posted_body(&api.seen()[2]);
    let length = body.chars().count();
    assert!(length <= 100_000, "{length}");
    for name in &names {
        assert!(body.contains(&format!("`{name}`")), "{name} is not named");
    }
    assert!(body.contains("| `staging` | 67 | 67 | 0 | 0 |"), "{body}");
    assert!(
        body.contains("the full reports are in [the job's artifacts](https://gitlab.example.com/g/fleet/-/jobs/900/artifacts/browse/.kopsci/reports)"),
        "{body}"
    );
}

#[test]
fn the_budget_is_a_flag_within_gitlabs_limit() {
    let sb = reports();
    for bad in ["10", "1000001"] {
        print_note(&sb, &["--max-chars", bad]).expect_code(64);
    }
}

/// A dry run of an `absent: true` cluster, and one whose kOps plan deletes
/// resources, with a report.md far over a small budget each.
fn deleting_reports() -> Sandbox {
    let big = format!("```diff\n{}```\n", "+ a changed line\n".repeat(2_000));
    reports()
        .file(
            "kopsci.yaml",
            &format!("{FLEET}  - {{name: old.k8s.example.com, environment: prod, absent: true}}\n"),
        )
        .file(
            ".kopsci/reports/dev-a.k8s.example.com/report.md",
            &big,
        )
        .file(
            ".kopsci/reports/old.k8s.example.com/report.json",
            r#"{"format":"kopsci-report/v1","stage":"dryrun","cluster":"old.k8s.example.com","environment":"prod",
                "action":"delete","changes_pending":true,"deletion":"TYPE\tNAME\tID\ninstance\tnodes\ti-0abc\n","failed":null}"#,
        )
        .file(
            ".kopsci/reports/old.k8s.example.com/report.md",
            "#### `old.k8s.example.com` — deletion preview\n\n```text\ninstance nodes i-0abc\n```\n",
        )
        .file(
            ".kopsci/reports/prod-a.k8s.example.com/report.json",
            r#"{"format":"kopsci-report/v1","stage":"dryrun","cluster":"prod-a.k8s.example.com","environment":"prod",
                "create":0,"update":1,"delete":2,"changes_pending":true,"removed_instance_groups":["nodes-old"],
                "update_plan":{"create":[],"modify":[{"kind":"LaunchTemplate","name":"nodes","fields":[]}],
                  "delete":[{"kind":"AutoscalingGroup","name":"nodes-old.prod-a.k8s.example.com","fields":[]}],
                  "delete_on_prune":[{"kind":"SecurityGroupRule","name":"old-rule @ops","fields":[]}],
                  "needs_apply":true,"warnings":[]},"failed":null}"#,
        )
        .file(".kopsci/reports/prod-a.k8s.example.com/report.md", &big)
}

#[test]
fn deletions_are_in_their_own_section_even_over_budget() {
    let sb = deleting_reports();
    let body = print_note(
        &sb,
        &[
            "--max-chars",
            "8000",
            CLUSTERS[0],
            CLUSTERS[1],
            CLUSTERS[2],
            "old.k8s.example.com",
        ],
    )
    .success()
    .stdout();
    assert!(body.chars().count() <= 8000, "{}", body.chars().count());
    assert!(body.contains("**Truncated**"), "over budget: {body}");
    let (head, rest) = body
        .split_once("| Cluster | Result |")
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        head.contains("### kopsci dry run: 4 clusters, 3 with changes, 2 destructive, 1 failed\n\n### :warning: Destructive changes\n"),
        "{head}"
    );
    for item in [
        "- `prod-a.k8s.example.com` (prod):\n  - Removed instance groups `nodes-old` (in the state store, no longer in the manifest): kept for now, as `prune_instance_groups` is off",
        "  - kOps resources deleted when the change is applied, by the `apply` job: `AutoscalingGroup/nodes-old.prod-a.k8s.example.com`\n",
        "  - kOps resources deleted when kOps prunes old resources, which the `apply` job does last: `SecurityGroupRule/old-rule @\u{2060}ops`\n",
        "- `old.k8s.example.com` (prod):\n  - **The whole cluster is deleted** (`absent: true` in the fleet)",
    ] {
        assert!(head.contains(item), "{item:?} missing from:\n{head}");
    }
    // The small deletion preview fits and comes first; the big reports,
    // destructive or not, are links.
    assert!(
        rest.contains("<details><summary><code>old.k8s.example.com</code>: the whole cluster is to be deleted (absent: true)</summary>"),
        "{rest}"
    );
    assert!(
        rest.contains("- `prod-a.k8s.example.com`: details left out\n"),
        "{rest}"
    );
    assert!(!rest.contains("+ a changed line"), "{rest}");
}

#[test]
fn clusters_that_left_the_fleet_are_listed_as_remaining() {
    let sb = reports();
    let body = printed_note(
        &sb,
        &[
            "--left-the-fleet",
            "gone-a.k8s.example.com",
            "--left-the-fleet",
            "gone-b.k8s.example.com",
        ],
    );
    assert!(body.contains(", 2 left the fleet\n"), "{body}");
    assert!(
        body.contains("### :warning: Left the fleet\n\n- `gone-a.k8s.example.com`: left the fleet: its cloud resources remain\n- `gone-b.k8s.example.com`: left the fleet: its cloud resources remain\n"),
        "{body}"
    );
    assert!(
        body.contains("kopsci never deletes a cluster that leaves the fleet")
            && body.contains("To delete a cluster, keep its entry with `absent: true` instead"),
        "{body}"
    );

    // Only a cluster removed: no dry run, the note still says it.
    let body = print_note(
        &sb,
        &[
            "--report-dir",
            "no-reports",
            "--left-the-fleet",
            "gone-a.k8s.example.com",
        ],
    )
    .success()
    .stdout();
    assert!(
        body.contains("### kopsci dry run: 1 cluster left the fleet\n")
            && body.contains(
                "- `gone-a.k8s.example.com`: left the fleet: its cloud resources remain\n"
            )
            && body.contains("No cluster is affected by this change."),
        "{body}"
    );
}

#[test]
fn left_the_fleet_takes_cluster_names_only() {
    let sb = reports();
    for bad in ["../etc", "Gone.example.com", "a/b", "", "x\u{1b}[31m"] {
        let run = print_note(&sb, &["--left-the-fleet", bad])
            .fails_with(64, &["--left-the-fleet", "invalid cluster name"]);
        assert!(run.stdout().is_empty());
        assert!(!run.stderr().contains('\u{1b}'), "{}", run.stderr());
    }
}

#[test]
fn clusters_applied_after_merge_come_from_the_fleet_file() {
    let sb = reports().file(
        "fleets/other.yaml",
        "templates: [t]\nenvironments:\n  dev: {}\n  prod:\n    apply: update-roll\n    auto_apply: true\n    auto_roll: true\nclusters:\n  - {name: dev-a.k8s.example.com, environment: dev}\n  - {name: prod-a.k8s.example.com, environment: prod}\n",
    );
    let body = printed_note(&sb, &[]);
    assert!(
        body.contains("**After merge**, the default branch applies these clusters without a click (`auto_apply: true`):\n\n- `dev`: `apply` runs by itself (`kops reconcile cluster`: control plane, then nodes): `dev-a.k8s.example.com`, `dev-b.k8s.example.com`\n\nAny other cluster waits for a click on its manual jobs.\n"),
        "{body}"
    );

    // Another fleet file, named as the pipeline names it.
    let body = printed_note(&sb, &["--fleet", "fleets/other.yaml"]);
    assert!(
        body.starts_with("<!-- kopsci-note fleet=fleets/other.yaml -->\n"),
        "{body}"
    );
    assert!(
        body.contains("- `prod`: `update`, then `roll`, run by themselves (`auto_roll: true`): `prod-a.k8s.example.com`\n"),
        "{body}"
    );
    assert!(!body.contains("- `dev`:"), "{body}");
}

#[test]
fn an_unreadable_fleet_file_is_a_warning_not_a_failure() {
    let sb = reports().file("kopsci.yaml", "clusters: [unclosed\n");
    let run = print_note(&sb, &CLUSTERS).success();
    let body = run.stdout();
    assert!(
        body.contains("> :warning: `kopsci.yaml` could not be read (")
            && body.contains(
                "), so this note cannot say which clusters are applied automatically after merge.\n"
            ),
        "{body}"
    );
    // The rest of the note is all there.
    assert!(
        body.contains("| `dev-a.k8s.example.com` (dev) | 1 to create, 2 to modify, 0 to delete |"),
        "{body}"
    );
    run.assert_stderr_has("the fleet file kopsci.yaml could not be read");
}
