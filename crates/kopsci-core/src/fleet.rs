//! The fleet file (`kopsci.yaml`): parsing and validation, each cluster's
//! values layers, fleet-wide rendering, `--check` and `--explain`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::errors::{Error, Result};
use crate::render::{RenderOptions, TemplateSet};
use crate::values::{self, Explanation, Layer, Map, Value};

/// The file name looked for in the current directory.
pub const DEFAULT_FLEET_FILE: &str = "kopsci.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    state: Option<Spanned<String>>,
    #[serde(default)]
    kops: Option<KopsFile>,
    #[serde(default, deserialize_with = "null_as_empty")]
    templates: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    snippets: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    values: Vec<String>,
    #[serde(default)]
    manifests: Option<String>,
    #[serde(default)]
    // `dev:` with nothing under it is a valid, empty environment.
    environments: IndexMap<String, Option<EnvironmentFile>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    clusters: Vec<ClusterFile>,
    #[serde(default)]
    aws: Option<AwsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KopsFile {
    #[serde(default)]
    version: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentFile {
    #[serde(default, deserialize_with = "null_as_empty")]
    values: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    needs: Vec<Spanned<String>>,
    #[serde(default)]
    state: Option<Spanned<String>>,
    #[serde(default)]
    aws: Option<AwsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    name: Spanned<String>,
    environment: Spanned<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    values: Vec<String>,
    #[serde(default)]
    state: Option<Spanned<String>>,
    #[serde(default)]
    aws: Option<AwsFile>,
}

/// An `aws:` block (fleet, environment or cluster level).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsFile {
    #[serde(default)]
    role_arn: Option<Spanned<String>>,
    #[serde(default)]
    external_id: Option<Spanned<String>>,
    #[serde(default)]
    external_id_env: Option<Spanned<String>>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    #[serde(default)]
    session_name: Option<Spanned<String>>,
    #[serde(default)]
    duration_seconds: Option<Spanned<u32>>,
}

/// How kopsci gets the AWS identity it runs kops (and reads the state store)
/// as, from the `aws:` blocks of the fleet, the cluster's environment and
/// the cluster, merged key by key (the most specific block wins).
///
/// With `role_arn`, kopsci assumes that role (STS `AssumeRole`, with the
/// external ID when one is set) using the standard credential chain, and
/// hands kops exactly the temporary credentials. Without it, kops inherits
/// the job's credentials. `Debug` never shows the external ID.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub role_arn: Option<String>,
    pub external_id: Option<ExternalId>,
    /// AWS region for STS and for kops (`AWS_REGION`).
    pub region: Option<String>,
    /// `RoleSessionName`; default `kopsci` (plus the GitLab job ID).
    pub session_name: Option<String>,
    /// Lifetime of the assumed-role session (900–43200 s; default 3600).
    pub duration_seconds: Option<u32>,
}

/// Where the external ID of an assumed role comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ExternalId {
    /// Written in the fleet file.
    Literal(String),
    /// Read from this environment variable (a masked CI/CD variable).
    Env(String),
}

impl std::fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExternalId::Literal(_) => f.write_str("Literal(<redacted>)"),
            ExternalId::Env(name) => f.debug_tuple("Env").field(name).finish(),
        }
    }
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id)
            .field("region", &self.region)
            .field("session_name", &self.session_name)
            .field("duration_seconds", &self.duration_seconds)
            .finish()
    }
}

impl AwsSettings {
    /// `self` with every key `more` sets replaced by `more`'s.
    fn overlay(&self, more: &AwsSettings) -> AwsSettings {
        AwsSettings {
            role_arn: more.role_arn.clone().or_else(|| self.role_arn.clone()),
            external_id: more
                .external_id
                .clone()
                .or_else(|| self.external_id.clone()),
            region: more.region.clone().or_else(|| self.region.clone()),
            session_name: more
                .session_name
                .clone()
                .or_else(|| self.session_name.clone()),
            duration_seconds: more.duration_seconds.or(self.duration_seconds),
        }
    }
}

/// Checks one `aws:` block and converts it; `at` names it in errors
/// (`aws`, `environments.prod.aws`, `cluster `x`: aws`).
fn aws_settings(
    file: Option<&AwsFile>,
    at: &str,
    invalid: &dyn Fn(&serde_saphyr::Location, String) -> Error,
) -> Result<AwsSettings> {
    let Some(file) = file else {
        return Ok(AwsSettings::default());
    };
    if let Some(arn) = &file.role_arn {
        let parts: Vec<&str> = arn.value.splitn(6, ':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "iam"
            && parts[5].starts_with("role/")
            && parts[5].len() > "role/".len();
        if !valid {
            return Err(invalid(
                &arn.referenced,
                format!(
                    "{at}.role_arn: expected an IAM role ARN such as `arn:aws:iam::123456789012:role/kops`, got `{}`",
                    arn.value
                ),
            ));
        }
    }
    let sts_word = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let external_id = match (&file.external_id, &file.external_id_env) {
        (Some(_), Some(env)) => {
            return Err(invalid(
                &env.referenced,
                format!("{at}: set `external_id` or `external_id_env`, not both"),
            ));
        }
        (Some(id), None) => {
            // STS' own rule; the value itself is never echoed.
            let ok = (2..=1224).contains(&id.value.len())
                && id
                    .value
                    .chars()
                    .all(|c| sts_word(c) || c == ':' || c == '/');
            if !ok {
                return Err(invalid(
                    &id.referenced,
                    format!(
                        "{at}.external_id: expected 2 to 1224 characters of letters, digits and `_+=,.@:/-`"
                    ),
                ));
            }
            Some(ExternalId::Literal(id.value.clone()))
        }
        (None, Some(env)) => {
            let ok = !env.value.is_empty()
                && env
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(invalid(
                    &env.referenced,
                    format!(
                        "{at}.external_id_env: expected an environment variable name, got `{}`",
                        env.value
                    ),
                ));
            }
            Some(ExternalId::Env(env.value.clone()))
        }
        (None, None) => None,
    };
    if let Some(region) = &file.region {
        let ok = !region.value.is_empty()
            && region
                .value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(invalid(
                &region.referenced,
                format!(
                    "{at}.region: expected an AWS region such as `eu-west-1`, got `{}`",
                    region.value
                ),
            ));
        }
    }
    if let Some(name) = &file.session_name
        && !((2..=64).contains(&name.value.len()) && name.value.chars().all(sts_word))
    {
        return Err(invalid(
            &name.referenced,
            format!(
                "{at}.session_name: expected 2 to 64 characters of letters, digits and `_+=,.@-`, got `{}`",
                name.value
            ),
        ));
    }
    if let Some(d) = &file.duration_seconds
        && !(900..=43200).contains(&d.value)
    {
        return Err(invalid(
            &d.referenced,
            format!(
                "{at}.duration_seconds: expected 900 to 43200 (STS' limits), got {}",
                d.value
            ),
        ));
    }
    Ok(AwsSettings {
        role_arn: file.role_arn.as_ref().map(|s| s.value.clone()),
        external_id,
        region: file.region.as_ref().map(|s| s.value.clone()),
        session_name: file.session_name.as_ref().map(|s| s.value.clone()),
        duration_seconds: file.duration_seconds.as_ref().map(|d| d.value),
    })
}

/// `key:` with nothing after it reads as null; for lists that means empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An environment: values shared by its clusters and its promotion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub values: Vec<PathBuf>,
    /// Environments whose rollout must finish first.
    pub needs: Vec<String>,
    pub state: Option<String>,
}

/// One cluster of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub environment: String,
    pub values: Vec<PathBuf>,
    pub state: Option<String>,
}

/// Command-line layers applied on top of a cluster's files.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub set: Vec<String>,
    pub set_string: Vec<String>,
}

/// A validated fleet file. Paths are resolved against the directory that
/// holds the file.
#[derive(Debug)]
pub struct Fleet {
    path: PathBuf,
    root: PathBuf,
    state: Option<String>,
    kops_version: Option<semver::VersionReq>,
    templates: Vec<PathBuf>,
    snippets: Vec<PathBuf>,
    values: Vec<PathBuf>,
    manifests: PathBuf,
    environments: IndexMap<String, Environment>,
    clusters: Vec<Cluster>,
    /// Each cluster's merged `aws:` settings, by cluster name.
    aws: HashMap<String, AwsSettings>,
}

/// One cluster's rendered manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedManifest {
    pub cluster: String,
    pub text: String,
}

impl Fleet {
    /// Loads `explicit`, or `kopsci.yaml` from the current directory.
    pub fn discover(explicit: Option<&Path>) -> Result<Fleet> {
        match explicit {
            Some(path) => Fleet::load(path),
            None => {
                let path = Path::new(DEFAULT_FLEET_FILE);
                if !path.exists() {
                    return Err(Error::Usage(format!(
                        "no {DEFAULT_FLEET_FILE} in the current directory: pass --fleet FILE, or --template (and --values) to render without a fleet"
                    )));
                }
                Fleet::load(path)
            }
        }
    }

    /// Loads and validates a fleet file.
    pub fn load(path: &Path) -> Result<Fleet> {
        let src = crate::fsutil::read_to_string(path)?;
        // A fleet file in the current directory gets an empty root, so
        // paths read `values/base.yaml` rather than `./values/base.yaml`.
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Fleet::parse(&src, path, &root)
    }

    /// Parses and validates fleet-file text; `path` names it in errors and
    /// `root` is where its relative paths start.
    pub fn parse(src: &str, path: &Path, root: &Path) -> Result<Fleet> {
        let origin = path.display().to_string();
        let file: FleetFile = crate::yaml::from_str(src, &origin)?;
        let invalid = |loc: &serde_saphyr::Location, message: String| Error::Fleet {
            origin: format!("{origin}:{}:{}", loc.line(), loc.column()),
            message,
        };
        let resolve = |p: &String| root.join(p);

        if file.templates.is_empty() {
            return Err(Error::Fleet {
                origin: origin.clone(),
                message: "`templates` must list at least one template file or directory".into(),
            });
        }
        if let Some(state) = &file.state {
            check_state_url(&state.value).map_err(|m| invalid(&state.referenced, m))?;
        }
        let kops_version = match file.kops.as_ref().and_then(|k| k.version.as_ref()) {
            Some(v) => Some(semver::VersionReq::parse(&v.value).map_err(|e| {
                invalid(
                    &v.referenced,
                    format!(
                        "`kops.version`: expected a semver requirement such as \">=1.34.0, <1.35.0\": {e}"
                    ),
                )
            })?),
            None => None,
        };

        let fleet_aws = aws_settings(file.aws.as_ref(), "aws", &invalid)?;
        let mut env_aws: HashMap<&str, AwsSettings> = HashMap::new();
        let empty = EnvironmentFile::default();
        let mut environments = IndexMap::new();
        for (name, env) in &file.environments {
            let env = env.as_ref().unwrap_or(&empty);
            let at = format!("environments.{name}.aws");
            env_aws.insert(
                name.as_str(),
                fleet_aws.overlay(&aws_settings(env.aws.as_ref(), &at, &invalid)?),
            );
            if let Some(state) = &env.state {
                check_state_url(&state.value).map_err(|m| {
                    invalid(&state.referenced, format!("environments.{name}.state: {m}"))
                })?;
            }
            for need in &env.needs {
                if !file.environments.contains_key(&need.value) {
                    return Err(invalid(
                        &need.referenced,
                        format!(
                            "environments.{name}.needs: unknown environment `{}`; expected one of: {}",
                            need.value,
                            join_keys(file.environments.keys())
                        ),
                    ));
                }
            }
            environments.insert(
                name.clone(),
                Environment {
                    name: name.clone(),
                    values: env.values.iter().map(resolve).collect(),
                    needs: env.needs.iter().map(|n| n.value.clone()).collect(),
                    state: env.state.as_ref().map(|s| s.value.clone()),
                },
            );
        }
        if let Some(cycle) = find_cycle(&environments) {
            return Err(Error::Fleet {
                origin: origin.clone(),
                message: format!("environments.*.needs form a cycle: {}", cycle.join(" → ")),
            });
        }

        let mut seen = HashSet::new();
        let mut aws = HashMap::new();
        let mut clusters = Vec::with_capacity(file.clusters.len());
        for cluster in &file.clusters {
            let name = &cluster.name.value;
            check_cluster_name(name).map_err(|m| invalid(&cluster.name.referenced, m))?;
            if !seen.insert(name.clone()) {
                return Err(invalid(
                    &cluster.name.referenced,
                    format!("cluster `{name}` is declared twice"),
                ));
            }
            let environment = &cluster.environment.value;
            if !environments.contains_key(environment) {
                let expected = if environments.is_empty() {
                    "the fleet declares no `environments`".to_string()
                } else {
                    format!("expected one of: {}", join_keys(environments.keys()))
                };
                return Err(invalid(
                    &cluster.environment.referenced,
                    format!("cluster `{name}`: unknown environment `{environment}`; {expected}"),
                ));
            }
            if let Some(state) = &cluster.state {
                check_state_url(&state.value).map_err(|m| {
                    invalid(&state.referenced, format!("cluster `{name}`: state: {m}"))
                })?;
            }
            let at = format!("cluster `{name}`: aws");
            let own = aws_settings(cluster.aws.as_ref(), &at, &invalid)?;
            let merged = env_aws
                .get(environment.as_str())
                .unwrap_or(&fleet_aws)
                .overlay(&own);
            if merged.role_arn.is_none()
                && (merged.external_id.is_some()
                    || merged.session_name.is_some()
                    || merged.duration_seconds.is_some())
            {
                return Err(invalid(
                    &cluster.name.referenced,
                    format!(
                        "cluster `{name}`: aws.external_id, aws.session_name and aws.duration_seconds only apply with aws.role_arn, which no level sets for this cluster"
                    ),
                ));
            }
            aws.insert(name.clone(), merged);
            clusters.push(Cluster {
                name: name.clone(),
                environment: environment.clone(),
                values: cluster.values.iter().map(resolve).collect(),
                state: cluster.state.as_ref().map(|s| s.value.clone()),
            });
        }

        Ok(Fleet {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            state: file.state.map(|s| s.value),
            kops_version,
            templates: file.templates.iter().map(resolve).collect(),
            snippets: file.snippets.iter().map(resolve).collect(),
            values: file.values.iter().map(resolve).collect(),
            manifests: root.join(file.manifests.as_deref().unwrap_or("manifests")),
            environments,
            clusters,
            aws,
        })
    }

    /// The fleet file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the fleet's relative paths start from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.iter().map(|c| c.name.as_str()).collect()
    }

    pub fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.environments.values()
    }

    pub fn templates(&self) -> &[PathBuf] {
        &self.templates
    }

    pub fn snippets(&self) -> &[PathBuf] {
        &self.snippets
    }

    pub fn base_values(&self) -> &[PathBuf] {
        &self.values
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
    pub fn state_for<'a>(&'a self, cluster: &'a Cluster) -> Option<&'a str> {
        cluster
            .state
            .as_deref()
            .or_else(|| {
                self.environments
                    .get(&cluster.environment)
                    .and_then(|e| e.state.as_deref())
            })
            .or(self.state.as_deref())
    }

    /// The cluster's AWS settings: the fleet's `aws:`, overlaid by its
    /// environment's, overlaid by its own, key by key.
    pub fn aws_for(&self, cluster: &Cluster) -> AwsSettings {
        self.aws.get(&cluster.name).cloned().unwrap_or_default()
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

    /// One cluster by name.
    pub fn cluster(&self, name: &str) -> Result<&Cluster> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownCluster {
                name: name.to_string(),
                known: self.cluster_names().join(", "),
            })
    }

    /// The values files of a cluster, lowest first: base → environment →
    /// cluster. Directories are expanded.
    pub fn value_files(&self, cluster: &Cluster) -> Result<Vec<PathBuf>> {
        let env = &self.environments[&cluster.environment];
        let mut paths = self.values.clone();
        paths.extend(env.values.iter().cloned());
        paths.extend(cluster.values.iter().cloned());
        values::expand_paths(&paths)
    }

    /// Every layer of a cluster, files then `--set` then `--set-string`,
    /// each checked not to set a different `clusterName`.
    pub fn layers(&self, cluster: &Cluster, overrides: &Overrides) -> Result<Vec<Layer>> {
        self.layers_cached(cluster, overrides, &LayerCache::default())
    }

    fn layers_cached(
        &self,
        cluster: &Cluster,
        overrides: &Overrides,
        cache: &LayerCache,
    ) -> Result<Vec<Layer>> {
        let mut layers = Vec::new();
        for path in self.value_files(cluster)? {
            layers.push(cache.load(&path)?);
        }
        // kOps applies every `--set` before any `--set-string`. Each layer
        // is built over the merge of the ones before it, so `list[3]=x`
        // extends the list the files gave instead of replacing it.
        for expr in &overrides.set {
            values::push_set_layer(&mut layers, expr, true)?;
        }
        for expr in &overrides.set_string {
            values::push_set_layer(&mut layers, expr, false)?;
        }
        for layer in &layers {
            check_cluster_name_layer(cluster, layer)?;
        }
        Ok(layers)
    }

    /// The merged template context of a cluster.
    pub fn context(&self, cluster: &Cluster, overrides: &Overrides) -> Result<Map> {
        self.context_cached(cluster, overrides, &LayerCache::default())
    }

    fn context_cached(
        &self,
        cluster: &Cluster,
        overrides: &Overrides,
        cache: &LayerCache,
    ) -> Result<Map> {
        let layers = self.layers_cached(cluster, overrides, cache)?;
        let mut context = values::merge_layers(&layers);
        context.insert(
            "clusterName".to_string(),
            Value::String(cluster.name.clone()),
        );
        Ok(context)
    }

    /// What every layer gives `key` for a cluster, and which layer wins.
    pub fn explain(
        &self,
        cluster: &Cluster,
        overrides: &Overrides,
        key: &str,
    ) -> Result<Explanation> {
        let layers = self.layers(cluster, overrides)?;
        Ok(values::explain(&layers, key))
    }

    /// Renders clusters with the fleet's templates, in parallel; the result
    /// keeps the order of `clusters`. Values files shared between clusters
    /// are read once.
    pub fn render(
        &self,
        clusters: &[&Cluster],
        overrides: &Overrides,
        options: &RenderOptions,
    ) -> Result<Vec<RenderedManifest>> {
        let templates = TemplateSet::load(&self.templates, &self.snippets)?;
        let cache = LayerCache::default();
        let render_one = |cluster: &Cluster| -> Result<RenderedManifest> {
            let context = self.context_cached(cluster, overrides, &cache)?;
            let text = templates.render(&context, options)?;
            Ok(RenderedManifest {
                cluster: cluster.name.clone(),
                text,
            })
        };
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(clusters.len().max(1));
        let results: Vec<Result<RenderedManifest>> = if workers <= 1 {
            clusters.iter().map(|c| render_one(c)).collect()
        } else {
            let chunk = clusters.len().div_ceil(workers);
            std::thread::scope(|scope| {
                let handles: Vec<_> = clusters
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(|| part.iter().map(|c| render_one(c)).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let mut rendered = Vec::with_capacity(results.len());
        let mut first_error = None;
        for (cluster, result) in clusters.iter().zip(results) {
            match result {
                Ok(manifest) => rendered.push(manifest),
                Err(source) => {
                    let err = Error::Cluster {
                        cluster: cluster.name.clone(),
                        cause: Box::new(source),
                    };
                    if first_error.is_none() {
                        first_error = Some(err);
                    } else {
                        tracing::error!("{err}");
                    }
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(rendered),
        }
    }
}

/// Values files parsed once per command, shared between clusters and
/// threads.
#[derive(Default)]
struct LayerCache {
    loaded: Mutex<HashMap<PathBuf, Layer>>,
}

impl LayerCache {
    fn load(&self, path: &Path) -> Result<Layer> {
        if let Some(layer) = self.lock().get(path) {
            return Ok(layer.clone());
        }
        let layer = Layer {
            origin: path.display().to_string(),
            values: values::load_values_file(path)?,
        };
        self.lock().insert(path.to_path_buf(), layer.clone());
        Ok(layer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Layer>> {
        // A poisoned cache only means another thread panicked mid-insert;
        // the map itself is still consistent.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `clusterName` belongs to the fleet: a layer may repeat it, never change it.
fn check_cluster_name_layer(cluster: &Cluster, layer: &Layer) -> Result<()> {
    match layer.values.get("clusterName") {
        None => Ok(()),
        Some(Value::String(name)) if *name == cluster.name => Ok(()),
        Some(other) => Err(Error::Values {
            origin: layer.origin.clone(),
            message: format!(
                "sets clusterName to {}, but this layer is used for cluster `{}`; clusterName comes from the fleet file",
                describe(other),
                cluster.name
            ),
        }),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn check_state_url(url: &str) -> std::result::Result<(), String> {
    let valid = url
        .strip_prefix("s3://")
        .map(|rest| !rest.is_empty() && !rest.starts_with('/'))
        .or_else(|| {
            url.strip_prefix("file://")
                .map(|rest| rest.starts_with('/'))
        })
        .unwrap_or(false);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid state store `{url}`: expected `s3://bucket[/prefix]` or `file:///absolute/path`"
        ))
    }
}

/// kOps cluster names are DNS names; kopsci also uses them as file names,
/// so anything that could escape a directory is refused.
fn check_cluster_name(name: &str) -> std::result::Result<(), String> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() {
        return Err("cluster name is empty".into());
    }
    if name.len() > 253
        || !name.chars().all(valid_char)
        || name
            .split('.')
            .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return Err(format!(
            "invalid cluster name `{name}`: expected a DNS name (lowercase letters, digits, `-` and `.`), e.g. `dev.k8s.example.com`"
        ));
    }
    Ok(())
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// A cycle in environment `needs`, if any, as the names along it.
fn find_cycle(environments: &IndexMap<String, Environment>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        name: &str,
        envs: &IndexMap<String, Environment>,
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
            .map(|e| e.needs.as_slice())
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

/// A committed manifest that does not match a fresh render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDiff {
    pub cluster: String,
    pub path: PathBuf,
    /// The committed text; `None` when the file is missing.
    pub committed: Option<String>,
    pub rendered: String,
}

impl ManifestDiff {
    /// A unified diff from the committed file to the fresh render.
    pub fn unified(&self, color: bool) -> String {
        let committed = self.committed.as_deref().unwrap_or("");
        let path = self.path.display();
        let old_header = if self.committed.is_some() {
            format!("{path} (committed)")
        } else {
            "/dev/null (missing)".to_string()
        };
        let diff = similar::TextDiff::from_lines(committed, &self.rendered);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&old_header, &format!("{path} (rendered)"))
            .to_string();
        if color { colorize_diff(&text) } else { text }
    }
}

fn colorize_diff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let code = if line.starts_with("+++") || line.starts_with("---") {
            "1"
        } else if line.starts_with('+') {
            "32"
        } else if line.starts_with('-') {
            "31"
        } else if line.starts_with("@@") {
            "36"
        } else {
            ""
        };
        if code.is_empty() {
            out.push_str(line);
        } else {
            let body = line.strip_suffix('\n').unwrap_or(line);
            out.push_str(&format!("\x1b[{code}m{body}\x1b[0m"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Compares fresh renders with the committed `<dir>/<cluster>.yaml` files,
/// byte for byte; returns the clusters that differ.
pub fn check(dir: &Path, rendered: &[RenderedManifest]) -> Result<Vec<ManifestDiff>> {
    let mut stale = Vec::new();
    for manifest in rendered {
        let path = dir.join(format!("{}.yaml", manifest.cluster));
        let committed = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if committed.as_deref() != Some(manifest.text.as_str()) {
            stale.push(ManifestDiff {
                cluster: manifest.cluster.clone(),
                path,
                committed,
                rendered: manifest.text.clone(),
            });
        }
    }
    Ok(stale)
}

/// Human-readable `--explain` output for one cluster.
pub fn format_explanation(cluster: &str, explanation: &Explanation) -> Result<String> {
    let mut out = format!("{} for cluster {}:\n", explanation.key, cluster);
    if explanation.contributions.iter().all(|c| c.value.is_none()) {
        out.push_str("  not set by any layer\n");
        return Ok(out);
    }
    for (index, contribution) in explanation.contributions.iter().enumerate() {
        let marker = if explanation.winner == Some(index) {
            "*"
        } else {
            " "
        };
        let value = match &contribution.value {
            None => "(not set)".to_string(),
            Some(v) => inline_value(v)?,
        };
        out.push_str(&format!("{marker} {:<40} {value}\n", contribution.origin));
    }
    if let Some(winner) = explanation.winner {
        out.push_str(&format!(
            "  → wins: {}\n",
            explanation.contributions[winner].origin
        ));
    }
    Ok(out)
}

/// A value on one line: JSON is valid YAML flow syntax and never ambiguous.
fn inline_value(value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::YamlWrite(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(src: &str) -> Result<Fleet> {
        Fleet::parse(src, Path::new("kopsci.yaml"), Path::new("/fleet"))
    }

    const MINIMAL: &str = "\
state: s3://bucket/prefix
templates: [templates]
environments:
  dev: {}
  prod:
    needs: [dev]
    state: file:///srv/state
clusters:
  - {name: a.example.com, environment: dev}
  - {name: b.example.com, environment: prod, state: s3://other}
  - {name: c.example.com, environment: prod, values: [v/c.yaml]}
";

    #[test]
    fn paths_resolve_against_the_fleet_directory() {
        let fleet = parse(MINIMAL).unwrap();
        assert_eq!(fleet.templates(), [PathBuf::from("/fleet/templates")]);
        assert_eq!(fleet.manifests_dir(), PathBuf::from("/fleet/manifests"));
        assert_eq!(
            fleet.clusters()[2].values,
            [PathBuf::from("/fleet/v/c.yaml")]
        );
    }

    #[test]
    fn state_store_precedence_cluster_then_environment_then_fleet() {
        let fleet = parse(MINIMAL).unwrap();
        let states: Vec<_> = fleet
            .clusters()
            .iter()
            .map(|c| fleet.state_for(c))
            .collect();
        assert_eq!(
            states,
            [
                Some("s3://bucket/prefix"),
                Some("s3://other"),
                Some("file:///srv/state")
            ]
        );
    }

    #[test]
    fn select_keeps_order_and_collapses_duplicates() {
        let fleet = parse(MINIMAL).unwrap();
        let names = ["c.example.com", "a.example.com", "c.example.com"].map(String::from);
        let selected: Vec<_> = fleet
            .select(&names)
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(selected, ["c.example.com", "a.example.com"]);
        assert!(matches!(
            fleet.select(&["x.example.com".to_string()]),
            Err(Error::UnknownCluster { .. })
        ));
    }

    #[test]
    fn cluster_names_that_could_escape_a_directory_are_refused() {
        for bad in [
            "../etc",
            "a/b.example.com",
            "a..b",
            ".a",
            "a.",
            "UPPER.example.com",
            "-a.b",
        ] {
            assert!(check_cluster_name(bad).is_err(), "{bad}");
        }
        assert!(check_cluster_name("dev-1.k8s.example.com").is_ok());
    }

    #[test]
    fn needs_cycles_are_found() {
        let err = parse(
            "templates: [t]\nenvironments:\n  a: {needs: [c]}\n  b: {needs: [a]}\n  c: {needs: [b]}\nclusters: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cycle"), "{err}");
        assert!(err.contains("a → c → b → a"), "{err}");
    }

    #[test]
    fn check_flags_only_differing_manifests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.example.com.yaml"), "same\n").unwrap();
        std::fs::write(dir.path().join("b.example.com.yaml"), "old\n").unwrap();
        let rendered =
            ["a.example.com", "b.example.com", "c.example.com"].map(|c| RenderedManifest {
                cluster: c.to_string(),
                text: if c == "a.example.com" {
                    "same\n"
                } else {
                    "new\n"
                }
                .to_string(),
            });
        let stale = check(dir.path(), &rendered).unwrap();
        let names: Vec<_> = stale.iter().map(|d| d.cluster.as_str()).collect();
        assert_eq!(names, ["b.example.com", "c.example.com"]);
        assert!(stale[0].unified(false).contains("-old\n+new\n"));
        assert!(stale[1].committed.is_none());
        assert!(stale[0].unified(true).contains("\x1b[32m+new\x1b[0m"));
    }

    const AWS: &str = "\
templates: [t]
aws:
  role_arn: arn:aws:iam::111111111111:role/kops
  region: eu-west-1
environments:
  dev: {}
  prod:
    aws:
      role_arn: arn:aws:iam::222222222222:role/kops
      external_id_env: PROD_EXTERNAL_ID
clusters:
  - {name: a.example.com, environment: dev}
  - name: b.example.com
    environment: prod
    aws: {region: us-east-2, session_name: kopsci-b, duration_seconds: 7200}
  - name: c.example.com
    environment: dev
    aws: {external_id: \"team-a:42\"}
";

    #[test]
    fn aws_settings_merge_fleet_then_environment_then_cluster() {
        let fleet = parse(AWS).unwrap();
        let aws: Vec<AwsSettings> = fleet.clusters().iter().map(|c| fleet.aws_for(c)).collect();
        assert_eq!(
            aws[0],
            AwsSettings {
                role_arn: Some("arn:aws:iam::111111111111:role/kops".into()),
                region: Some("eu-west-1".into()),
                ..AwsSettings::default()
            }
        );
        assert_eq!(
            aws[1],
            AwsSettings {
                role_arn: Some("arn:aws:iam::222222222222:role/kops".into()),
                external_id: Some(ExternalId::Env("PROD_EXTERNAL_ID".into())),
                region: Some("us-east-2".into()),
                session_name: Some("kopsci-b".into()),
                duration_seconds: Some(7200),
            }
        );
        assert_eq!(
            aws[2].external_id,
            Some(ExternalId::Literal("team-a:42".into()))
        );
        assert!(!format!("{:?}", aws[2]).contains("team-a:42"));
        // No `aws:` anywhere: kops inherits the job's identity.
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.aws_for(&plain.clusters()[0]), AwsSettings::default());
    }

    #[test]
    fn invalid_aws_settings_name_the_key() {
        let cases = [
            (
                "aws: {role_arn: kops}",
                "aws.role_arn: expected an IAM role ARN",
            ),
            (
                "aws: {role_arn: \"arn:aws:iam::1:user/x\"}",
                "expected an IAM role ARN",
            ),
            ("aws: {region: EU WEST}", "aws.region"),
            ("aws: {rolearn: x}", "unknown field"),
            (
                "aws: {role_arn: \"arn:aws:iam::1:role/k\", duration_seconds: 60}",
                "aws.duration_seconds: expected 900 to 43200",
            ),
            (
                "aws: {role_arn: \"arn:aws:iam::1:role/k\", session_name: \"a b\"}",
                "aws.session_name",
            ),
            (
                "aws: {role_arn: \"arn:aws:iam::1:role/k\", external_id: x, external_id_env: Y}",
                "not both",
            ),
            (
                "aws: {role_arn: \"arn:aws:iam::1:role/k\", external_id: \"bad id!\"}",
                "aws.external_id: expected 2 to 1224",
            ),
            ("aws: {external_id: abc}", "only apply with aws.role_arn"),
        ];
        for (aws, want) in cases {
            let src = format!(
                "templates: [t]\n{aws}\nenvironments: {{dev: {{}}}}\nclusters: [{{name: a.example.com, environment: dev}}]\n"
            );
            let err = parse(&src).unwrap_err().to_string();
            assert!(err.contains(want), "{aws}: {err}");
            assert!(err.starts_with("kopsci.yaml:"), "{err}");
            assert!(!err.contains("bad id!"), "external ID echoed: {err}");
        }
        let err = parse("templates: [t]\nenvironments: {dev: {aws: {regio: x}}}\nclusters: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..4)
            .prop_map(|l| l.join("."))
    }

    proptest! {
        #[test]
        fn parse_never_panics(src in ".{0,400}") {
            let _ = parse(&src);
        }

        #[test]
        fn parse_never_panics_on_near_valid_yaml(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("templates: [t]".to_string()),
                    Just("clusters:".to_string()),
                    Just("- name: a.example.com".to_string()),
                    Just("  environment: dev".to_string()),
                    Just("environments: {dev: {needs: [dev]}}".to_string()),
                    Just("state: s3://".to_string()),
                    "[ -~]{0,20}",
                ],
                0..8,
            )
        ) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn generated_fleets_parse_with_their_clusters(
            names in proptest::collection::btree_set(name_strategy(), 0..8),
            envs in proptest::collection::vec("[a-z]{1,6}", 1..4),
        ) {
            let mut envs = envs;
            envs.sort();
            envs.dedup();
            let mut src = String::from("templates: [templates]\nenvironments:\n");
            for (i, env) in envs.iter().enumerate() {
                src.push_str(&format!("  \"{env}\":\n"));
                if i > 0 {
                    src.push_str(&format!("    needs: [\"{}\"]\n", envs[i - 1]));
                }
            }
            src.push_str("clusters:\n");
            for (i, name) in names.iter().enumerate() {
                src.push_str(&format!(
                    "  - name: \"{name}\"\n    environment: \"{}\"\n",
                    envs[i % envs.len()]
                ));
            }
            let fleet = parse(&src).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
            let parsed: Vec<&str> = fleet.cluster_names();
            let expected: Vec<&str> = names.iter().map(String::as_str).collect();
            prop_assert_eq!(parsed, expected);
            for (i, cluster) in fleet.clusters().iter().enumerate() {
                prop_assert_eq!(&cluster.environment, &envs[i % envs.len()]);
            }
        }
    }
}
