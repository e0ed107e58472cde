//! `kops create -f FILE` and `kops replace -f FILE [--force]`: store the
//! Cluster and InstanceGroup objects of a manifest, document by document in
//! file order, as kOps does (an error part-way leaves the earlier documents
//! stored). `create` refuses existing objects; `replace` refuses missing
//! ones unless `--force`, and never deletes instance groups the file does
//! not mention.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use super::Context;
use crate::objects::{
    self, CLUSTER_LABEL, Kind, check_cluster_name, check_instance_group_name, cluster_key,
    instance_group_key, kind_of, name_of,
};
use crate::store::Store;
use crate::ui;

/// The documents of every `-f` file, each with the file it came from.
fn read_documents(filenames: &[String]) -> Result<Vec<(String, Value)>> {
    let mut docs = Vec::new();
    for file in filenames {
        let text = if file == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("error reading from stdin")?;
            text
        } else {
            std::fs::read_to_string(file)
                .map_err(|e| anyhow!("error reading file {file:?}: {e}"))?
        };
        for doc in objects::parse_manifest(&text, file)? {
            docs.push((file.clone(), doc));
        }
    }
    Ok(docs)
}

/// The cluster an InstanceGroup belongs to, from its label, checked to
/// exist in the store.
fn owning_cluster(store: &dyn Store, ig: &Value, verb: &str) -> Result<String> {
    let cluster = ig
        .pointer(&format!(
            "/metadata/labels/{}",
            CLUSTER_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .unwrap_or("");
    if cluster.is_empty() {
        bail!("must specify {CLUSTER_LABEL:?} label with cluster name to {verb} instanceGroup");
    }
    check_cluster_name(cluster)?;
    if objects::read_cluster(store, cluster)?.is_none() {
        bail!("cluster {cluster:?} not found");
    }
    Ok(cluster.to_string())
}

fn check_object(kind: Kind, obj: &Value) -> Result<()> {
    match kind {
        Kind::Cluster => check_cluster_name(name_of(obj)),
        Kind::InstanceGroup => check_instance_group_name(name_of(obj)),
    }
}

pub fn create(ctx: &Context, filenames: &[String]) -> Result<()> {
    if filenames.is_empty() {
        ui::out(
            "Create a resource by command line, filename or stdin.\n\nUsage:\n  kops create {-f FILENAME}... [flags]\n",
        );
        return Ok(());
    }
    let store = ctx.store()?;
    let mut report = String::new();
    let mut cluster_name = String::new();
    for (file, mut obj) in read_documents(filenames)? {
        let kind = kind_of(&obj, &file)?;
        check_object(kind, &obj)?;
        let name = name_of(&obj).to_string();
        match kind {
            Kind::Cluster => {
                if objects::read_cluster(store.as_ref(), &name)?.is_some() {
                    bail!("cluster {name:?} already exists");
                }
                objects::stamp_creation(&mut obj, None);
                objects::write_object(store.as_ref(), &cluster_key(&name), &obj)?;
                report.push_str(&format!("Created cluster/{name}\n"));
                cluster_name = name;
            }
            Kind::InstanceGroup => {
                let cluster = owning_cluster(store.as_ref(), &obj, "create")?;
                if objects::read_instance_group(store.as_ref(), &cluster, &name)?.is_some() {
                    bail!("instanceGroup {name:?} already exists");
                }
                objects::stamp_creation(&mut obj, None);
                objects::write_object(store.as_ref(), &instance_group_key(&cluster, &name), &obj)?;
                report.push_str(&format!("Created instancegroup/{name}\n"));
                cluster_name = cluster;
            }
        }
    }
    if !report.is_empty() {
        report.push_str(&format!(
            "\nTo deploy these resources, run: kops update cluster --name {cluster_name} --yes\n\n"
        ));
        ui::out(&report);
    }
    Ok(())
}

pub fn replace(ctx: &Context, filenames: &[String], force: bool) -> Result<()> {
    if filenames.is_empty() {
        bail!("required flag(s) \"filename\" not set");
    }
    let store = ctx.store()?;
    for (file, mut obj) in read_documents(filenames)? {
        let kind = kind_of(&obj, &file)?;
        check_object(kind, &obj)?;
        let name = name_of(&obj).to_string();
        match kind {
            Kind::Cluster => {
                let existing = objects::read_cluster(store.as_ref(), &name)?;
                if existing.is_none() && !force {
                    bail!("cluster {name} does not exist (try adding --force flag)");
                }
                objects::stamp_creation(&mut obj, existing.as_ref());
                objects::write_object(store.as_ref(), &cluster_key(&name), &obj)?;
            }
            Kind::InstanceGroup => {
                let cluster = owning_cluster(store.as_ref(), &obj, "replace")?;
                let existing = objects::read_instance_group(store.as_ref(), &cluster, &name)?;
                if existing.is_none() {
                    if !force {
                        bail!("instanceGroup: {name} does not exist (try adding --force flag)");
                    }
                    ui::klog(
                        'I',
                        "replace.go:174",
                        &format!("instanceGroup: {name} was not found, creating resource now"),
                    );
                }
                objects::stamp_creation(&mut obj, existing.as_ref());
                objects::write_object(store.as_ref(), &instance_group_key(&cluster, &name), &obj)?;
            }
        }
    }
    Ok(())
}
