//! The fleet file (`kopsci.yaml`): a validated, typed view of the fleet —
//! its state stores, templates, values layers, environments (promotion
//! order, apply settings) and clusters.
//!
//! - [`file`]: the YAML schema as written;
//! - [`parse`]: checking it and resolving every cluster's settings;
//! - [`settings`]: how changes are applied (strategy, timeouts, pruning);
//! - [`render`]: every cluster's values layers and fleet-wide rendering,
//!   `--check` and `--explain`.

mod file;
mod parse;
pub mod render;
pub mod settings;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::aws::AwsSettings;
use crate::errors::{Error, FleetError, Result};
use crate::names::did_you_mean;
use crate::state::StoreUrl;

pub use render::{ManifestDiff, Overrides, RenderedManifest, check, format_explanation};
pub use settings::{ApplySettings, ApplyStrategy, Timeout};

/// The file name looked for in the current directory.
pub const DEFAULT_FLEET_FILE: &str = "kopsci.yaml";

/// One entry of a `values:` list: a YAML file or directory, or the JSON
/// of `terraform output -json` (`{terraform_output: FILE}`).
pub use crate::values::Source as ValuesSource;

/// An environment: values shared by its clusters, its promotion order and
/// its defaults for how changes are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub values: Vec<ValuesSource>,
    /// Environments whose rollout must finish first.
    pub needs: Vec<String>,
    pub state: Option<StoreUrl>,
    /// The fleet's settings overlaid by the environment's.
    pub apply: ApplySettings,
}

/// One cluster of the fleet, with every setting resolved (cluster level
/// over environment level over fleet level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub environment: String,
    pub values: Vec<ValuesSource>,
    /// The cluster's own `state:`; see [`Fleet::state_for`] for the one in
    /// effect.
    pub state: Option<StoreUrl>,
    pub aws: AwsSettings,
    pub apply: ApplySettings,
    /// `absent: true`: a reviewed deletion. The cluster is previewed for
    /// deletion in merge requests and deleted by a manual job, never
    /// rendered or applied.
    pub absent: bool,
}

/// A validated fleet file. Paths are resolved against the directory that
/// holds the file.
#[derive(Debug)]
pub struct Fleet {
    path: PathBuf,
    root: PathBuf,
    state: Option<StoreUrl>,
    kops_version: Option<semver::VersionReq>,
    templates: Vec<PathBuf>,
    snippets: Vec<PathBuf>,
    values: Vec<ValuesSource>,
    manifests: PathBuf,
    ignore: Vec<String>,
    ignore_set: globset::GlobSet,
    environments: IndexMap<String, Environment>,
    clusters: Vec<Cluster>,
}

impl Fleet {
    /// Loads `explicit`, or `kopsci.yaml` from the current directory.
    pub fn discover(explicit: Option<&Path>) -> Result<Fleet> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_FLEET_FILE));
        if !path.exists() {
            return Err(FleetError::NotFound {
                path: path.to_path_buf(),
                explicit: explicit.is_some(),
            }
            .into());
        }
        Fleet::load(path)
    }

    /// Loads and validates a fleet file.
    pub fn load(path: &Path) -> Result<Fleet> {
        let src = match std::fs::read_to_string(path) {
            Ok(src) => src,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FleetError::NotFound {
                    path: path.to_path_buf(),
                    explicit: true,
                }
                .into());
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        // A fleet file in the current directory gets an empty root, so
        // paths read `values/base.yaml` rather than `./values/base.yaml`.
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Fleet::parse(&src, path, &root)
    }

    /// Parses and validates fleet-file text; `path` names it in errors and
    /// `root` is where its relative paths start.
    pub fn parse(src: &str, path: &Path, root: &Path) -> Result<Fleet> {
        parse::parse(src, path, root)
    }

    /// The fleet file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the fleet's relative paths start from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every cluster, `absent` ones included, in file order.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The clusters that are meant to exist (not `absent`).
    pub fn present_clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(|c| !c.absent)
    }

    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.iter().map(|c| c.name.as_str()).collect()
    }

    pub fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.environments.values()
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }

    pub fn templates(&self) -> &[PathBuf] {
        &self.templates
    }

    pub fn snippets(&self) -> &[PathBuf] {
        &self.snippets
    }

    pub fn base_values(&self) -> &[ValuesSource] {
        &self.values
    }

    /// The `ignore:` globs as written.
    pub fn ignore_globs(&self) -> &[String] {
        &self.ignore
    }

    /// Whether a repository path (relative to the repository root, `/`
    /// separated) matches an `ignore:` glob.
    pub fn is_ignored(&self, path: &str) -> bool {
        self.ignore_set.is_match(path)
    }

    /// The semver requirement on the kops binary, when the fleet sets one.
    pub fn kops_version(&self) -> Option<&semver::VersionReq> {
        self.kops_version.as_ref()
    }

    /// Where committed manifests live.
    pub fn manifests_dir(&self) -> PathBuf {
        self.manifests.clone()
    }

    /// The cluster's state store: its own, else its environment's, else the
    /// fleet's.
    pub fn state_for<'a>(&'a self, cluster: &'a Cluster) -> Option<&'a StoreUrl> {
        cluster
            .state
            .as_ref()
            .or_else(|| {
                self.environments
                    .get(&cluster.environment)
                    .and_then(|e| e.state.as_ref())
            })
            .or(self.state.as_ref())
    }

    /// The live store of a cluster: `--state` when given, else
    /// [`Fleet::state_for`]; an error when neither names one.
    pub fn store_for(&self, cluster: &Cluster, state: Option<&StoreUrl>) -> Result<StoreUrl> {
        state
            .or_else(|| self.state_for(cluster))
            .cloned()
            .ok_or_else(|| {
                FleetError::NoStateStore {
                    cluster: cluster.name.clone(),
                    file: self.path.display().to_string(),
                }
                .into()
            })
    }

    /// The cluster's AWS settings: the fleet's `aws:`, overlaid by its
    /// environment's, overlaid by its own, key by key.
    pub fn aws_for(&self, cluster: &Cluster) -> AwsSettings {
        cluster.aws.clone()
    }

    /// Looks clusters up by name, in the order given; duplicates collapse.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Cluster>> {
        let mut selected: Vec<&Cluster> = Vec::with_capacity(names.len());
        for name in names {
            let cluster = self.cluster(name)?;
            if !selected.iter().any(|c| c.name == cluster.name) {
                selected.push(cluster);
            }
        }
        Ok(selected)
    }

    /// One cluster by name; an unknown name suggests the closest one.
    pub fn cluster(&self, name: &str) -> Result<&Cluster> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownCluster {
                name: name.to_string(),
                known: self.cluster_names().join(", "),
                suggestion: did_you_mean(name, self.cluster_names()).map(str::to_string),
            })
    }

    /// The values sources of a cluster, lowest first: base → environment →
    /// cluster. Directories are expanded.
    pub fn value_files(&self, cluster: &Cluster) -> Result<Vec<ValuesSource>> {
        let env = &self.environments[&cluster.environment];
        let mut expanded = Vec::new();
        for source in self.values.iter().chain(&env.values).chain(&cluster.values) {
            match source {
                ValuesSource::File(path) => expanded.extend(
                    crate::values::expand_paths(std::slice::from_ref(path))?
                        .into_iter()
                        .map(ValuesSource::File),
                ),
                ValuesSource::TerraformOutput(_) => expanded.push(source.clone()),
            }
        }
        Ok(expanded)
    }
}

#[cfg(test)]
mod tests;
