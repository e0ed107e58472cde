//! Turning the fleet file as written ([`super::file`]) into a [`Fleet`]:
//! every key checked once, with its line and column, and every cluster's
//! settings resolved. Nothing is re-checked later: stages get typed values.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use indexmap::IndexMap;
use serde_saphyr::{Location, Spanned};

use super::file::{ClusterFile, EnvironmentFile, FleetFile, KopsFile, LevelKeys, ValuesEntryFile};
use super::settings::{ApplyLayer, ApplySettings, ApplyStrategy, Timeout};
use super::{Cluster, Environment, Fleet, ValuesSource};
use crate::aws::AwsSettings;
use crate::errors::{At, FleetError, Result};
use crate::names::{ClusterName, EnvironmentName, did_you_mean};
use crate::state::StoreUrl;

/// Positions in one fleet file.
struct Source<'a> {
    file: String,
    root: &'a Path,
}

impl Source<'_> {
    fn at(&self, loc: &Location) -> At {
        At {
            file: self.file.clone(),
            line: loc.line(),
            column: loc.column(),
        }
    }

    fn invalid(&self, loc: &Location, key: impl Into<String>, problem: String) -> crate::Error {
        crate::Error::from(FleetError::Invalid {
            at: self.at(loc),
            key: key.into(),
            problem,
        })
    }

    /// A state store URL, relative `file://` paths taken from the fleet
    /// file's directory.
    fn store(&self, url: &Spanned<String>, key: &str) -> Result<StoreUrl> {
        StoreUrl::parse_in(&url.value, self.root).map_err(|e| {
            self.invalid(
                &url.referenced,
                key,
                format!("{e}; expected `s3://bucket[/prefix]` or `file://PATH`"),
            )
        })
    }

    fn values(&self, entries: &[Spanned<ValuesEntryFile>]) -> Vec<ValuesSource> {
        entries
            .iter()
            .map(|entry| match &entry.value {
                ValuesEntryFile::Path(p) => ValuesSource::File(self.root.join(p)),
                ValuesEntryFile::TerraformOutput(p) => {
                    ValuesSource::TerraformOutput(self.root.join(p))
                }
            })
            .collect()
    }

    fn timeout(&self, text: &Option<Spanned<String>>, key: &str) -> Result<Option<Timeout>> {
        text.as_ref()
            .map(|t| Timeout::parse(&t.value).map_err(|m| self.invalid(&t.referenced, key, m)))
            .transpose()
    }

    /// `kops.version` applies to the whole fleet: one kops runs every
    /// cluster of a job.
    fn fleet_wide_only(&self, prefix: &str, kops: Option<&KopsFile>) -> Result<()> {
        match kops.and_then(|k| k.version.as_ref()) {
            Some(version) => Err(self.invalid(
                &version.referenced,
                format!("{prefix}kops.version"),
                "the kops version is fleet-wide: set it under the top-level `kops:`".into(),
            )),
            None => Ok(()),
        }
    }

    /// One level's apply settings: `prefix` names the level in errors
    /// (``, `environments.prod.`, `cluster `x`: `).
    fn apply_layer(&self, prefix: &str, keys: LevelKeys) -> Result<ApplyLayer> {
        let LevelKeys {
            apply,
            kops,
            prune_instance_groups,
            validate,
            validation_timeout,
            drain_timeout,
        } = keys;
        let mut layer = ApplyLayer {
            prune_instance_groups,
            validate,
            validation_timeout: self
                .timeout(validation_timeout, &format!("{prefix}validation_timeout"))?,
            drain_timeout: self.timeout(drain_timeout, &format!("{prefix}drain_timeout"))?,
            ..ApplyLayer::default()
        };
        if let Some(apply) = apply {
            if let Some(strategy) = &apply.value.strategy {
                layer.strategy = Some(ApplyStrategy::parse(strategy).ok_or_else(|| {
                    self.invalid(
                        &apply.referenced,
                        format!("{prefix}apply"),
                        format!(
                            "unknown strategy `{}`; expected one of: {}",
                            crate::text::escape_controls(strategy),
                            ApplyStrategy::NAMES.join(", ")
                        ),
                    )
                })?);
            }
            if let Some(timeout) = &apply.value.timeout {
                layer.timeout = Some(Timeout::parse(timeout).map_err(|m| {
                    self.invalid(&apply.referenced, format!("{prefix}apply.timeout"), m)
                })?);
            }
        }
        if let Some(api) = kops.and_then(|k| k.api_server.as_ref()) {
            let ok = (api.value.starts_with("https://") || api.value.starts_with("http://"))
                && api.value.len() > "https://".len()
                && !api
                    .value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(self.invalid(
                    &api.referenced,
                    format!("{prefix}kops.api_server"),
                    format!(
                        "expected the API server's URL, such as `https://api.internal.prod.example.com`, got `{}`",
                        crate::text::escape_controls(&api.value)
                    ),
                ));
            }
            layer.api_server = Some(api.value.clone());
        }
        Ok(layer)
    }
}

pub(super) fn parse(src: &str, path: &Path, root: &Path) -> Result<Fleet> {
    let file_name = path.display().to_string();
    let file: FleetFile = crate::yaml::from_str(src, &file_name)?;
    let source = Source {
        file: file_name.clone(),
        root,
    };

    if file.templates.is_empty() {
        return Err(FleetError::NoTemplates { file: file_name }.into());
    }
    let state = file
        .state
        .as_ref()
        .map(|s| source.store(s, "state"))
        .transpose()?;
    let kops_version = match file.kops.as_ref().and_then(|k| k.version.as_ref()) {
        Some(v) => Some(semver::VersionReq::parse(&v.value).map_err(|e| {
            source.invalid(
                &v.referenced,
                "kops.version",
                format!("expected a semver requirement such as \">=1.34.0, <1.35.0\": {e}"),
            )
        })?),
        None => None,
    };
    let mut ignore = globset::GlobSetBuilder::new();
    for glob in &file.ignore {
        ignore.add(globset::Glob::new(&glob.value).map_err(|e| {
            source.invalid(
                &glob.referenced,
                "ignore",
                format!("invalid glob: {}", e.kind()),
            )
        })?);
    }
    let ignore_set = ignore.build().map_err(|e| FleetError::Invalid {
        at: At {
            file: file_name.clone(),
            line: 0,
            column: 0,
        },
        key: "ignore".into(),
        problem: e.to_string(),
    })?;

    let fleet_aws = AwsSettings::from_file(file.aws.as_ref(), "aws", &file_name)?;
    let fleet_apply = ApplySettings::default().overlay(&source.apply_layer("", file.keys())?);

    let environments = environments(&source, &file, &fleet_aws, &fleet_apply)?;
    let clusters = clusters(&source, &file.clusters, &environments)?;

    Ok(Fleet {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        state,
        kops_version,
        templates: file.templates.iter().map(|p| root.join(p)).collect(),
        snippets: file.snippets.iter().map(|p| root.join(p)).collect(),
        values: source.values(&file.values),
        manifests: root.join(file.manifests.as_deref().unwrap_or("manifests")),
        ignore: file.ignore.iter().map(|g| g.value.clone()).collect(),
        ignore_set,
        environments: environments
            .into_iter()
            .map(|(name, resolved)| (name, resolved.environment))
            .collect(),
        clusters,
    })
}

/// An environment and the `aws:` settings its clusters start from.
struct ResolvedEnvironment {
    environment: Environment,
    aws: AwsSettings,
}

fn environments(
    source: &Source,
    file: &FleetFile,
    fleet_aws: &AwsSettings,
    fleet_apply: &ApplySettings,
) -> Result<IndexMap<String, ResolvedEnvironment>> {
    let empty = EnvironmentFile::default();
    let names: Vec<&str> = file.environments.keys().map(|k| k.value.as_str()).collect();
    let mut environments = IndexMap::new();
    for (name, env) in &file.environments {
        let at = source.at(&name.referenced);
        let name = EnvironmentName::parse(&name.value)
            .map_err(|e| FleetError::Name {
                at: at.clone(),
                name: e,
            })?
            .as_str()
            .to_string();
        let env = env.as_ref().unwrap_or(&empty);
        let prefix = format!("environments.{name}.");
        let aws = fleet_aws.overlay(&AwsSettings::from_file(
            env.aws.as_ref(),
            &format!("{prefix}aws"),
            &source.file,
        )?);
        let mut layer = source.apply_layer(&prefix, env.keys())?;
        layer.auto_apply = env.auto_apply;
        layer.auto_roll = env.auto_roll;
        source.fleet_wide_only(&prefix, env.kops.as_ref())?;
        let state = env
            .state
            .as_ref()
            .map(|s| source.store(s, &format!("{prefix}state")))
            .transpose()?;
        for need in &env.needs {
            if !names.contains(&need.value.as_str()) {
                return Err(FleetError::UnknownEnvironment {
                    at: source.at(&need.referenced),
                    referrer: format!("{prefix}needs"),
                    name: crate::text::escape_controls(&need.value).to_string(),
                    known: names.iter().map(|n| n.to_string()).collect(),
                    suggestion: did_you_mean(&need.value, names.iter().copied())
                        .map(str::to_string),
                }
                .into());
            }
        }
        environments.insert(
            name.clone(),
            ResolvedEnvironment {
                environment: Environment {
                    name,
                    values: source.values(&env.values),
                    needs: env.needs.iter().map(|n| n.value.clone()).collect(),
                    state,
                    apply: fleet_apply.overlay(&layer),
                },
                aws,
            },
        );
    }
    if let Some(cycle) = find_cycle(&environments) {
        return Err(FleetError::NeedsCycle {
            file: source.file.clone(),
            cycle,
        }
        .into());
    }
    Ok(environments)
}

fn clusters(
    source: &Source,
    files: &[ClusterFile],
    environments: &IndexMap<String, ResolvedEnvironment>,
) -> Result<Vec<Cluster>> {
    let mut seen = HashSet::new();
    let mut clusters = Vec::with_capacity(files.len());
    for cluster in files {
        let at = source.at(&cluster.name.referenced);
        let name = ClusterName::parse(&cluster.name.value)
            .map_err(|e| FleetError::Name {
                at: at.clone(),
                name: e,
            })?
            .into_string();
        if !seen.insert(name.clone()) {
            return Err(FleetError::DuplicateCluster { at, name }.into());
        }
        let environment = &cluster.environment.value;
        let Some(env) = environments.get(environment) else {
            let known: Vec<String> = environments.keys().cloned().collect();
            return Err(FleetError::UnknownEnvironment {
                at: source.at(&cluster.environment.referenced),
                referrer: format!("cluster `{name}`"),
                name: crate::text::escape_controls(environment).to_string(),
                suggestion: did_you_mean(environment, known.iter().map(String::as_str))
                    .map(str::to_string),
                known,
            }
            .into());
        };
        let prefix = format!("cluster `{name}`: ");
        let state = cluster
            .state
            .as_ref()
            .map(|s| source.store(s, &format!("{prefix}state")))
            .transpose()?;
        let aws = env.aws.overlay(&AwsSettings::from_file(
            cluster.aws.as_ref(),
            &format!("{prefix}aws"),
            &source.file,
        )?);
        if aws.has_session_keys_without_role() {
            return Err(FleetError::RoleRequired { at, cluster: name }.into());
        }
        source.fleet_wide_only(&prefix, cluster.kops.as_ref())?;
        let layer = source.apply_layer(&prefix, cluster.keys())?;
        clusters.push(Cluster {
            name,
            environment: environment.clone(),
            values: source.values(&cluster.values),
            state,
            aws,
            apply: env.environment.apply.overlay(&layer),
            absent: cluster.absent,
        });
    }
    Ok(clusters)
}

/// A cycle in environment `needs`, if any, as the names along it.
fn find_cycle(environments: &IndexMap<String, ResolvedEnvironment>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        name: &str,
        envs: &IndexMap<String, ResolvedEnvironment>,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = stack.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(name.to_string(), Mark::Active);
        stack.push(name.to_string());
        for need in envs
            .get(name)
            .map(|e| e.environment.needs.as_slice())
            .unwrap_or_default()
        {
            if let Some(cycle) = visit(need, envs, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for name in environments.keys() {
        if let Some(cycle) = visit(name, environments, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
