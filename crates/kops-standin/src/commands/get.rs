//! `kops get clusters [CLUSTER]... [--full]`, `kops get instancegroups
//! [IG]... --name C`, `kops get all [CLUSTER]` and bare `kops get
//! [CLUSTER]`, with `-o table|yaml|json`. YAML output separates objects the
//! way kOps does; tables are laid out by Go's tabwriter.

use anyhow::{Result, bail};
use serde_json::Value;

use super::Context;
use crate::cli::{GetArgs, GetCommand};
use crate::complete::completed_cluster;
use crate::model::Role;
use crate::objects::{self, name_of, spec_str, spec_strings};
use crate::text::tab_table;
use crate::ui;

pub fn run(ctx: &Context, args: &GetArgs) -> Result<()> {
    let output = args.output.as_deref().unwrap_or("table");
    match &args.command {
        Some(GetCommand::Clusters { full, names }) => {
            clusters(ctx, names, full.unwrap_or(false), output)
        }
        Some(GetCommand::Instancegroups { names }) => instance_groups(ctx, names, output),
        Some(GetCommand::All { args }) => all(ctx, args, output),
        None => all(ctx, &args.args, output),
    }
}

fn clusters(ctx: &Context, names: &[String], full: bool, output: &str) -> Result<()> {
    let store = ctx.store()?;
    let mut found = Vec::new();
    if names.is_empty() {
        for dir in store.top_level_dirs()? {
            if objects::check_cluster_name(&dir).is_err() {
                continue;
            }
            if let Some(c) = objects::read_cluster(store.as_ref(), &dir)? {
                found.push(c);
            }
        }
        if found.is_empty() {
            ui::err("No clusters found\n");
            return Ok(());
        }
    } else {
        for name in names {
            objects::check_cluster_name(name)?;
            match objects::read_cluster(store.as_ref(), name)? {
                Some(c) => found.push(c),
                None => bail!("cluster not found {name:?}"),
            }
        }
    }
    if full {
        found = found
            .iter()
            .map(|c| completed_cluster(c, store.url()))
            .collect();
    }
    print_objects(&found, output, cluster_table)
}

fn instance_groups(ctx: &Context, names: &[String], output: &str) -> Result<()> {
    let cluster_name = ctx.required_cluster()?;
    let store = ctx.store()?;
    let cluster = objects::require_cluster(store.as_ref(), &cluster_name)?;
    let mut groups = objects::read_instance_groups(store.as_ref(), &cluster_name)?;
    if !names.is_empty() {
        let mut picked = Vec::new();
        for name in names {
            match groups.iter().find(|g| name_of(g) == name) {
                Some(g) => picked.push(g.clone()),
                None => bail!("InstanceGroup {name:?} not found"),
            }
        }
        groups = picked;
    }
    if groups.is_empty() {
        ui::err("No InstanceGroup objects found\n");
        return Ok(());
    }
    print_objects(&groups, output, |gs| group_table(&cluster, gs))
}

fn all(ctx: &Context, args: &[String], output: &str) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(args)?;
    let store = ctx.store()?;
    let cluster = objects::require_cluster(store.as_ref(), &cluster_name)?;
    let groups = objects::read_instance_groups(store.as_ref(), &cluster_name)?;
    match output {
        "table" => {
            let mut text = String::from("Cluster\n");
            text.push_str(&cluster_table(std::slice::from_ref(&cluster)));
            text.push_str("\nInstance Groups\n");
            text.push_str(&group_table(&cluster, &groups));
            ui::out(&text);
            Ok(())
        }
        _ => {
            let mut objs = vec![cluster];
            objs.extend(groups);
            print_objects(&objs, output, |_| String::new())
        }
    }
}

fn print_objects(objs: &[Value], output: &str, table: impl Fn(&[Value]) -> String) -> Result<()> {
    let text = match output {
        "yaml" => {
            let mut parts = Vec::new();
            for obj in objs {
                parts.push(objects::to_yaml(obj)?);
            }
            parts.join("\n---\n\n")
        }
        "json" => {
            if let [one] = objs {
                objects::to_json(one)?
            } else {
                objects::to_json(&Value::Array(objs.to_vec()))?
            }
        }
        _ => table(objs),
    };
    ui::out(&text);
    Ok(())
}

fn zones_of(cluster: &Value, subnet_names: Option<&[String]>) -> String {
    let mut zones: Vec<String> = Vec::new();
    for s in objects::spec_value(cluster, "subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        if subnet_names.is_some_and(|names| !names.iter().any(|n| n == name)) {
            continue;
        }
        if let Some(zone) = s.get("zone").and_then(Value::as_str)
            && !zones.iter().any(|z| z == zone)
        {
            zones.push(zone.to_string());
        }
    }
    zones.sort();
    zones.join(",")
}

fn cluster_table(clusters: &[Value]) -> String {
    let mut rows = vec![vec!["NAME".into(), "CLOUD".into(), "ZONES".into()]];
    for c in clusters {
        rows.push(vec![
            name_of(c).to_string(),
            spec_str(c, "cloudProvider").unwrap_or("aws").to_string(),
            zones_of(c, None),
        ]);
    }
    tab_table(&rows)
}

fn group_table(cluster: &Value, groups: &[Value]) -> String {
    let mut rows = vec![vec![
        "NAME".into(),
        "ROLE".into(),
        "MACHINETYPE".into(),
        "MIN".into(),
        "MAX".into(),
        "ZONES".into(),
    ]];
    for g in groups {
        let role = spec_str(g, "role")
            .and_then(Role::from_spec)
            .map(Role::api_name)
            .unwrap_or("")
            .to_string();
        let (min, max) = crate::model::min_max(g);
        rows.push(vec![
            name_of(g).to_string(),
            role,
            spec_str(g, "machineType").unwrap_or("").to_string(),
            min.to_string(),
            max.to_string(),
            zones_of(cluster, Some(&spec_strings(g, "subnets"))),
        ]);
    }
    tab_table(&rows)
}
