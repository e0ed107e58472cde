//! `kops validate cluster [CLUSTER]`: kOps' validation of the simulated
//! cluster, in kOps' output formats — `-o json` prints Go's
//! `json.Marshal` of the result (`{"failures":[{"type","name","message"}],
//! "nodes":[{"name","zone","role","hostname","status"}]}`, empty lists
//! left out, no trailing newline), `-o yaml` the same as YAML, the table
//! form `Validating cluster C` then `INSTANCE GROUPS`, `NODE STATUS`,
//! `VALIDATION ERRORS` and `Validation Failed` or `Your cluster C is
//! ready`. With `--wait` it retries every `--interval` (simulated time,
//! nothing sleeps), printing every attempt's result back to back; `--count`
//! consecutive passes are needed. Errors are kOps' (`Validation failed:
//! cluster not yet healthy`, `… wait time exceeded during validation`),
//! exit 1. What a healthy or failing cluster is comes from the simulated
//! cloud and the `KOPS_STANDIN_VALIDATE` control (controls.rs).

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Context;
use super::export;
use crate::cli::ValidateClusterArgs;
use crate::cloud::Cloud;
use crate::complete::hex;
use crate::controls::Validation;
use crate::model::{Role, role_of};
use crate::objects::{self, name_of, spec_int, spec_str, spec_strings, spec_value};
use crate::text::tab_table;
use crate::ui;

const SECOND: i128 = 1_000_000_000;
/// kOps' default `--interval`.
const DEFAULT_INTERVAL: i128 = 10 * SECOND;

pub fn run(ctx: &Context, args: &ValidateClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    let options = Options {
        output: args.output.clone().unwrap_or_else(|| "table".to_string()),
        wait: args.wait.unwrap_or(0),
        interval: args.interval.unwrap_or(DEFAULT_INTERVAL),
        count: args.count.unwrap_or(0),
        kubeconfig: args.kubeconfig.clone(),
        use_kubeconfig: args.use_kubeconfig.unwrap_or(false),
        api_server: args.api_server.clone(),
        max_unready_nodes: args.max_unready_nodes.unwrap_or(0),
        control_plane_only: false,
    };
    core(ctx, &cluster_name, &options).map_err(|e| anyhow!("Validation failed: {e:#}"))
}

/// One `RunValidateCluster`.
pub struct Options {
    pub output: String,
    /// Nanoseconds; 0 means a single attempt.
    pub wait: i128,
    pub interval: i128,
    pub count: i64,
    pub kubeconfig: Option<String>,
    pub use_kubeconfig: bool,
    /// `--api-server`: only its host is used, to name what cannot be reached.
    pub api_server: Option<String>,
    pub max_unready_nodes: i64,
    /// `reconcile cluster`'s wait for the API: only control-plane and
    /// API-server groups, pods ignored.
    pub control_plane_only: bool,
}

impl Options {
    /// What `reconcile cluster` asks for before rolling the control plane.
    pub fn api_wait(use_kubeconfig: bool, api_server: Option<String>) -> Options {
        Options {
            api_server,
            output: "table".to_string(),
            wait: 600 * SECOND,
            interval: DEFAULT_INTERVAL,
            count: 0,
            kubeconfig: None,
            use_kubeconfig,
            max_unready_nodes: 0,
            control_plane_only: true,
        }
    }
}

/// kOps' `ValidationCluster`, serialised as Go does (field order, empty
/// lists left out).
#[derive(Debug, Default, Serialize)]
struct Result_ {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<Node>,
}

#[derive(Debug, Serialize)]
struct Failure {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    message: String,
}

#[derive(Debug, Serialize)]
struct Node {
    name: String,
    zone: String,
    role: String,
    hostname: String,
    status: String,
}

pub fn core(ctx: &Context, cluster_name: &str, options: &Options) -> Result<()> {
    let store = ctx.store()?;
    let cluster = objects::require_cluster(store.as_ref(), cluster_name)?;
    let mut groups = Vec::new();
    for g in objects::read_instance_groups(store.as_ref(), cluster_name)? {
        let role = role_of(&g)?;
        if options.control_plane_only && !matches!(role, Role::ControlPlane | Role::ApiServer) {
            continue;
        }
        groups.push((g, role));
    }
    if options.output == "table" {
        ui::out(&format!("Validating cluster {cluster_name}\n\n"));
    }
    if groups.is_empty() {
        bail!("no InstanceGroup objects found");
    }
    check_kubeconfig(cluster_name, options)?;
    let control = if options.control_plane_only {
        Validation::Pass
    } else {
        Validation::from_env()?
    };

    // Each attempt takes an interval of simulated time (at least a second,
    // so that `--interval 0` still ends).
    let step = options.interval.max(SECOND);
    let mut elapsed: i128 = 0;
    let mut consecutive: i64 = 0;
    loop {
        if options.wait > 0 && elapsed >= options.wait {
            bail!("wait time exceeded during validation");
        }
        elapsed += step;
        let result = match attempt(ctx, cluster_name, &cluster, &groups, options, control) {
            Ok(r) => r,
            Err(Unexpected(message)) => {
                consecutive = 0;
                if options.wait > 0 {
                    ui::klog(
                        'W',
                        "validate_cluster.go:184",
                        &format!("(will retry): unexpected error during validation: {message}"),
                    );
                    continue;
                }
                bail!("unexpected error during validation: {message}");
            }
        };
        print(&result, cluster_name, &groups, &options.output)?;
        if result.failures.is_empty() {
            consecutive += 1;
            if consecutive < options.count {
                ui::klog(
                    'I',
                    "validate_cluster.go:199",
                    &format!(
                        "(will retry): cluster passed validation {consecutive} consecutive times"
                    ),
                );
                if options.wait > 0 {
                    continue;
                }
                bail!("cluster passed validation {consecutive} consecutive times");
            }
            return Ok(());
        }
        if options.wait > 0 {
            ui::klog(
                'W',
                "validate_cluster.go:210",
                "(will retry): cluster not yet healthy",
            );
            consecutive = 0;
            continue;
        }
        bail!("cluster not yet healthy");
    }
}

/// A validation that could not run (kOps retries these with `--wait`).
struct Unexpected(String);

/// One look at the cluster.
fn attempt(
    ctx: &Context,
    cluster_name: &str,
    cluster: &Value,
    groups: &[(Value, Role)],
    options: &Options,
    control: Validation,
) -> std::result::Result<Result_, Unexpected> {
    let mut cloud = ctx
        .cloud
        .load(cluster_name)
        .map_err(|e| Unexpected(format!("{e:#}")))?;
    let api_up = cloud
        .groups
        .values()
        .any(|g| g.role == Role::ControlPlane.api_name() && !g.instances.is_empty());
    if !api_up {
        let host = match &options.api_server {
            Some(s) => url_host(s),
            None => export::api_host(cluster, cluster_name, false),
        };
        return Err(Unexpected(format!(
            "unable to resolve Kubernetes cluster API URL dns: lookup {host}: no such host"
        )));
    }
    let forced = control != Validation::Pass && control.attempt_fails(&mut cloud.controls);
    if control != Validation::Pass && ctx.cloud.is_set() {
        ctx.cloud
            .save(cluster_name, &cloud)
            .map_err(|e| Unexpected(format!("{e:#}")))?;
    }
    Ok(evaluate(
        cluster_name,
        cluster,
        groups,
        &cloud,
        options,
        forced,
    ))
}

/// The host of an `--api-server` URL (`https://h:443/x` → `h`).
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_string()
}

/// kOps' validator over the simulated cloud: every instance of a
/// non-bastion group is a Ready node; a group short of its target size is
/// an `InstanceGroup` failure; a forced failure makes the first worker
/// node NotReady and the `coredns` pod not ready.
fn evaluate(
    cluster_name: &str,
    cluster: &Value,
    groups: &[(Value, Role)],
    cloud: &Cloud,
    options: &Options,
    forced: bool,
) -> Result_ {
    let mut result = Result_::default();
    let mut sorted: Vec<&(Value, Role)> = groups.iter().collect();
    sorted.sort_by(|a, b| name_of(&a.0).cmp(name_of(&b.0)));
    let mut unready_workers = Vec::new();
    for (ig, role) in sorted {
        if *role == Role::Bastion {
            continue;
        }
        let name = name_of(ig);
        let Some(group) = cloud.groups.get(name) else {
            continue;
        };
        let zones = group_zones(cluster, ig);
        for (i, instance) in group.instances.iter().enumerate() {
            let ready = !(forced && *role == Role::Node && unready_workers.is_empty());
            if !ready {
                unready_workers.push(instance.id.clone());
            }
            result.nodes.push(Node {
                name: instance.id.clone(),
                zone: zones
                    .get(i % zones.len().max(1))
                    .cloned()
                    .unwrap_or_default(),
                role: node_role(*role).to_string(),
                hostname: instance.id.clone(),
                status: if ready { "True" } else { "False" }.to_string(),
            });
        }
        let ready = group.instances.len() as i64;
        if ready < group.target {
            result.failures.push(Failure {
                kind: "InstanceGroup".to_string(),
                name: name.to_string(),
                message: format!(
                    "InstanceGroup {name:?} did not have enough nodes {ready} vs {}",
                    group.target
                ),
            });
        }
    }
    if unready_workers.len() as i64 > options.max_unready_nodes {
        for id in &unready_workers {
            result.failures.push(Failure {
                kind: "Node".to_string(),
                name: id.clone(),
                message: format!("node {id:?} of role \"node\" is not ready"),
            });
        }
    }
    if forced && !options.control_plane_only {
        let pod = coredns_pod(cluster_name);
        result.failures.push(Failure {
            kind: "Pod".to_string(),
            name: format!("kube-system/{pod}"),
            message: format!("system-cluster-critical pod {pod:?} is not ready (coredns)"),
        });
    }
    result
}

/// The role kOps reads from a node's labels.
fn node_role(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::ApiServer => "apiserver",
        Role::Node | Role::Bastion => "node",
    }
}

/// The zones of an instance group's subnets, in the group's order.
fn group_zones(cluster: &Value, ig: &Value) -> Vec<String> {
    let subnets = spec_value(cluster, "subnets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    spec_strings(ig, "subnets")
        .iter()
        .filter_map(|name| {
            subnets
                .iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|s| s.get("zone").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect()
}

/// A stable, pod-like name (`coredns-<replicaset hash>-<suffix>`).
fn coredns_pod(cluster: &str) -> String {
    let h = hex(&Sha256::digest(format!("{cluster}/coredns").as_bytes()));
    format!("coredns-{}-{}", &h[..10], &h[10..15])
}

/// `--kubeconfig F` (or `--use-kubeconfig`) must name a kubeconfig with a
/// context for the cluster, as client-go's loader requires.
fn check_kubeconfig(cluster_name: &str, options: &Options) -> Result<()> {
    let path = match (&options.kubeconfig, options.use_kubeconfig) {
        (Some(p), _) => std::path::PathBuf::from(p),
        (None, true) => export::default_path()?,
        (None, false) => return Ok(()),
    };
    let fail =
        |reason: String| anyhow!("cannot load kubecfg settings for {cluster_name:?}: {reason}");
    match export::load(&path) {
        Ok(Some(config)) if export::has_context(&config, cluster_name) => Ok(()),
        Ok(Some(_)) => Err(fail(format!(
            "context was not found for specified context: {cluster_name}"
        ))),
        Ok(None) => Err(fail(format!(
            "stat {}: no such file or directory",
            path.display()
        ))),
        Err(e) => Err(fail(format!("{e:#}"))),
    }
}

fn print(
    result: &Result_,
    cluster_name: &str,
    groups: &[(Value, Role)],
    output: &str,
) -> Result<()> {
    let text = match output {
        "table" => table(result, cluster_name, groups),
        "json" => serde_json::to_string(result)?,
        "yaml" => objects::to_yaml(&serde_json::to_value(result)?)?,
        other => bail!("unknown output format: {other:?}"),
    };
    ui::out(&text);
    Ok(())
}

fn table(result: &Result_, cluster_name: &str, groups: &[(Value, Role)]) -> String {
    let size = |ig: &Value, field: &str| {
        spec_int(ig, field).map_or_else(|| "-".to_string(), |v| v.to_string())
    };
    let mut rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(ig, role)| {
            vec![
                name_of(ig).to_string(),
                role.api_name().to_string(),
                spec_str(ig, "machineType").unwrap_or("").to_string(),
                size(ig, "minSize"),
                size(ig, "maxSize"),
                spec_strings(ig, "subnets").join(","),
            ]
        })
        .collect();
    let mut text = String::from("INSTANCE GROUPS\n");
    text.push_str(&sorted_table(
        &["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "SUBNETS"],
        &mut rows,
    ));
    let mut rows: Vec<Vec<String>> = result
        .nodes
        .iter()
        .map(|n| vec![n.name.clone(), n.role.clone(), n.status.clone()])
        .collect();
    text.push_str("\nNODE STATUS\n");
    text.push_str(&sorted_table(&["NAME", "ROLE", "READY"], &mut rows));
    if result.failures.is_empty() {
        text.push_str(&format!("\nYour cluster {cluster_name} is ready\n"));
        return text;
    }
    let mut rows: Vec<Vec<String>> = result
        .failures
        .iter()
        .map(|f| vec![f.kind.clone(), f.name.clone(), f.message.clone()])
        .collect();
    text.push_str("\nVALIDATION ERRORS\n");
    text.push_str(&sorted_table(&["KIND", "NAME", "MESSAGE"], &mut rows));
    text.push_str("\nValidation Failed\n");
    text
}

/// kOps' `tables.Table.Render`: header, then rows sorted by their cells.
fn sorted_table(header: &[&str], rows: &mut [Vec<String>]) -> String {
    rows.sort();
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows.iter().cloned());
    tab_table(&all)
}
