//! `kopsci drift` against the fake GitLab API (`support::gitlab`): one
//! issue per drifted cluster, opened once, updated in place (found again by
//! its hidden marker, never duplicated), closed when the cluster is in sync
//! again; issues of failed dry runs and of other authors left alone.

use crate::harness::{Kopsci, Run, Sandbox};
use crate::pipeline::kopsci_outside_ci;
use crate::support::gitlab::{FakeGitLab, bot_user as user, echo, gitlab_job, reply};

const ISSUES: &str = "/api/v4/projects/42/issues";
const LISTING: &str = "/api/v4/projects/42/issues?state=opened&labels=kopsci-drift&author_id=7&order_by=created_at&sort=asc&per_page=100&page=1";
const MARKER: &str = "<!-- kopsci-drift fleet=kopsci.yaml cluster=dev-a.k8s.example.com -->";

/// The reports of a drift pipeline: dev-a as given, prod-a in sync, dev-b
/// failed.
fn reports(dev_a_drifted: bool) -> Sandbox {
    Sandbox::new()
        .file(
            ".kopsci/reports/dev-a.k8s.example.com/report.json",
            &format!(
                r#"{{"format":"kopsci-report/v1","stage":"dryrun","cluster":"dev-a.k8s.example.com","environment":"dev",
                    "create":0,"update":{},"delete":0,"changes_pending":{dev_a_drifted},"removed_instance_groups":[],"failed":null}}"#,
                u8::from(dev_a_drifted)
            ),
        )
        .file(
            ".kopsci/reports/dev-a.k8s.example.com/report.md",
            "#### `dev-a.k8s.example.com` (dev) — 0 to create, 1 to modify, 0 to delete\n\n```diff\n-  maxSize: 2\n+  maxSize: 5\n```\n\n@all /close\n",
        )
        .file(
            ".kopsci/reports/prod-a.k8s.example.com/report.json",
            r#"{"stage":"dryrun","cluster":"prod-a.k8s.example.com","environment":"prod","create":0,"update":0,"delete":0,"changes_pending":false}"#,
        )
        .file(
            ".kopsci/reports/dev-b.k8s.example.com/report.json",
            r#"{"stage":"dryrun","cluster":"dev-b.k8s.example.com","environment":"dev","failed":"kops update cluster failed","failed_step":"kops update"}"#,
        )
}

/// `kopsci drift` in a scheduled pipeline of project 42.
fn drift(sb: &Sandbox, api: &FakeGitLab, pipeline: u32) -> Kopsci {
    gitlab_job(sb.path(), api, "schedule", pipeline).args([
        "drift",
        "--report-dir",
        ".kopsci/reports",
    ])
}

fn issue(iid: u64, author: u64, description: &str) -> serde_json::Value {
    serde_json::json!({
        "iid": iid, "title": "Drift: dev-a.k8s.example.com differs from kopsci.yaml",
        "description": description, "state": "opened", "author": {"id": author},
        "web_url": format!("https://gitlab.example.com/g/fleet/-/issues/{iid}"),
    })
}

/// The listing of the bot's open drift issues, answering `issues`.
fn listing(issues: serde_json::Value) -> crate::support::gitlab::Reply {
    reply("GET", LISTING, 200, issues)
}

/// The update of the bot's issue `iid`, echoed back.
fn edit(iid: u64) -> crate::support::gitlab::Reply {
    echo("PUT", &format!("{ISSUES}/{iid}"), 200, issue(iid, 7, ""))
}

/// `kopsci drift` for `pipeline` against a fake GitLab answering the user
/// look-up and then `replies`; asserts it succeeded and used every reply.
#[track_caller]
fn drift_with(
    sb: &Sandbox,
    pipeline: u32,
    replies: Vec<crate::support::gitlab::Reply>,
) -> (FakeGitLab, Run) {
    let api = FakeGitLab::start(std::iter::once(user()).chain(replies).collect());
    let run = drift(sb, &api, pipeline).run().success();
    api.assert_done();
    (api, run)
}

#[test]
fn drift_opens_one_issue_updates_it_in_place_and_closes_it_when_in_sync() {
    // 1. dev-a drifted, no issue yet: one is opened. An issue by someone
    //    else that carries the marker is not kopsci's.
    let sb = reports(true);
    let (api, run) = drift_with(
        &sb,
        500,
        vec![
            listing(serde_json::json!([issue(
                3,
                99,
                &format!("{MARKER}\ncopied")
            )])),
            echo(
                "POST",
                ISSUES,
                201,
                serde_json::json!({"iid": 12, "state": "opened", "web_url": "https://gitlab.example.com/g/fleet/-/issues/12"}),
            ),
        ],
    );
    let stdout = run.stdout();
    assert!(
        stdout.starts_with(
            "kopsci drift: 3 cluster(s): 1 drifted, 1 in sync, 1 unknown (dry run failed)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  dev-a.k8s.example.com (dev): drift: 0 to create, 1 to modify, 0 to delete; issue #12 opened https://gitlab.example.com/g/fleet/-/issues/12\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  prod-a.k8s.example.com (prod): in sync\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  dev-b.k8s.example.com (dev): unknown, the dry run failed: kops update cluster failed\n"),
        "{stdout}"
    );
    let posted = api.seen()[2].json();
    assert_eq!(posted["labels"], "kopsci-drift");
    assert_eq!(
        posted["title"],
        "Drift: dev-a.k8s.example.com differs from kopsci.yaml"
    );
    let description = posted["description"].as_str().unwrap().to_string();
    assert!(
        description.starts_with(&format!("{MARKER}\n")),
        "{description}"
    );
    assert!(
        description.contains("**0 to create, 1 to modify, 0 to delete**"),
        "{description}"
    );
    assert!(
        description.contains("+  maxSize: 5"),
        "the report is folded in: {description}"
    );
    assert!(
        description.contains("[pipeline](https://gitlab.example.com/g/fleet/-/pipelines/500)"),
        "{description}"
    );
    assert!(description.contains("https://gitlab.example.com/g/fleet/-/jobs/900/artifacts/file/.kopsci/reports/dev-a.k8s.example.com/report.md"), "{description}");
    assert!(!description.contains("@all"), "{description}");
    assert!(!description.contains("\n/close"), "{description}");

    // 2. Still drifted, a later pipeline: the same issue is updated, no
    //    second one is opened.
    let (api, run) = drift_with(
        &sb,
        501,
        vec![
            listing(serde_json::json!([issue(12, 7, &description)])),
            edit(12),
        ],
    );
    run.assert_stdout_has("; issue #12 updated");
    let updated = api.seen()[2].json();
    let description = updated["description"].as_str().unwrap().to_string();
    assert!(description.starts_with(MARKER), "{description}");
    assert!(description.contains("pipelines/501"), "{description}");
    assert!(updated.get("state_event").is_none(), "{updated}");

    // 2b. The same pipeline again: nothing to rewrite.
    let (_, run) = drift_with(
        &sb,
        501,
        vec![listing(serde_json::json!([issue(12, 7, &description)]))],
    );
    run.assert_stdout_has("; issue #12 already up to date");

    // 3. In sync again: the issue is closed.
    let sb = reports(false);
    let (api, run) = drift_with(
        &sb,
        502,
        vec![
            listing(serde_json::json!([issue(12, 7, &description)])),
            edit(12),
        ],
    );
    run.assert_stdout_has("  dev-a.k8s.example.com (dev): in sync; issue #12 closed");
    let closed = api.seen()[2].json();
    assert_eq!(closed["state_event"], "close");
    let description = closed["description"].as_str().unwrap();
    assert!(description.starts_with(MARKER), "{description}");
    assert!(description.contains("### Resolved:"), "{description}");
}

#[test]
fn a_failed_dry_run_leaves_its_issue_open() {
    let sb = reports(true);
    let marker = "<!-- kopsci-drift fleet=kopsci.yaml cluster=dev-b.k8s.example.com -->";
    let (_, run) = drift_with(
        &sb,
        600,
        vec![
            listing(serde_json::json!([
                issue(20, 7, &format!("{marker}\nolder drift")),
                issue(21, 7, &format!("{MARKER}\nsame")),
            ])),
            // dev-a: its issue is updated; dev-b: nothing is sent.
            edit(21),
        ],
    );
    assert!(run.stdout().contains("dev-b.k8s.example.com (dev): unknown, the dry run failed: kops update cluster failed; issue #20 left open"), "{}", run.stdout());
}

#[test]
fn an_issue_answer_that_is_not_the_issue_is_an_error() {
    let sb = reports(true);
    let api = FakeGitLab::start(vec![
        user(),
        listing(serde_json::json!([])),
        reply("POST", ISSUES, 201, serde_json::json!({"iid": 12})),
    ]);
    drift(&sb, &api, 500).run().fails_with(
        1,
        &["GitLab API POST /projects/42/issues: HTTP 201 but the response is not the issue kopsci created"],
    );
    api.assert_done();
}

#[test]
fn without_a_token_drift_prints_the_summary_and_manages_no_issues() {
    let sb = reports(true);
    let api = FakeGitLab::start(Vec::new());
    let run = drift(&sb, &api, 500)
        .env("KOPSCI_GITLAB_TOKEN", "")
        .run()
        .success();
    assert_eq!(api.connections(), 0);
    run.assert_stdout_has(
        "  dev-a.k8s.example.com (dev): drift: 0 to create, 1 to modify, 0 to delete\n",
    );
    assert_eq!(
        run.stderr().trim(),
        "kopsci drift: KOPSCI_GITLAB_TOKEN is not set: drift issues were not opened, updated or closed (add it as a masked CI/CD variable holding a token with the `api` scope; see docs/gitlab.md)"
    );
}

#[test]
fn drift_refuses_foreign_reports_and_needs_some() {
    // A report for another cluster says nothing about this one.
    let sb = reports(true).file(
        ".kopsci/reports/prod-a.k8s.example.com/report.json",
        r#"{"stage":"dryrun","cluster":"dev-a.k8s.example.com","create":5,"changes_pending":true}"#,
    );
    let run = kopsci_outside_ci(sb.path())
        .args(["drift", "--report-dir", ".kopsci/reports"])
        .run()
        .success();
    run.assert_stdout_has("prod-a.k8s.example.com: unknown, the dry run failed: .kopsci/reports/prod-a.k8s.example.com/report.json: the report is for cluster `dev-a.k8s.example.com`, not `prod-a.k8s.example.com`: refused",
    );
    let empty = Sandbox::new();
    kopsci_outside_ci(empty.path())
        .args(["drift", "--report-dir", "none"])
        .run()
        .fails_with(64, &["no dry-run reports in none"]);
}

#[test]
fn drift_help_has_examples_and_keeps_the_pipeline_interface() {
    let out = Kopsci::new()
        .args(["drift", "--help"])
        .run()
        .success()
        .stdout();
    assert!(out.contains("Examples:"), "{out}");
    assert!(
        out.contains("kopsci drift --report-dir .kopsci/reports"),
        "{out}"
    );
    assert!(out.contains("--detailed-exitcode"), "{out}");
}
