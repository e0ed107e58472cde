//! A cluster's values layers (base → environment → cluster → `--set` →
//! `--set-string`) and rendering the fleet's templates with them: many
//! clusters at once, values files read once, `--check` against committed
//! manifests and `--explain` of a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Cluster, Fleet, ValuesSource};
use crate::errors::{Error, Result};
use crate::render::{RenderOptions, TemplateSet};
use crate::values::{self, Explanation, Layer, Map, Sensitive, Value};

/// Command-line layers applied on top of a cluster's files.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub set: Vec<String>,
    pub set_string: Vec<String>,
}

/// One cluster's rendered manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedManifest {
    pub cluster: String,
    pub text: String,
}

impl Fleet {
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
        for source in self.value_files(cluster)? {
            layers.push(cache.load(&source)?);
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
    /// Values of sensitive Terraform outputs show as `(sensitive)`.
    pub fn explain(
        &self,
        cluster: &Cluster,
        overrides: &Overrides,
        key: &str,
    ) -> Result<Explanation> {
        let cache = LayerCache::default();
        let layers = self.layers_cached(cluster, overrides, &cache)?;
        let mut explanation = values::explain(&layers, key);
        cache.sensitive().redact(&mut explanation);
        Ok(explanation)
    }

    /// The keys of a cluster's values that must never be printed: outputs
    /// its Terraform layers mark sensitive.
    pub fn sensitive(&self, cluster: &Cluster) -> Result<Sensitive> {
        let cache = LayerCache::default();
        self.layers_cached(cluster, &Overrides::default(), &cache)?;
        Ok(cache.sensitive())
    }

    /// One cluster's manifest, as the stages render it (no overrides).
    pub fn render_one(&self, cluster: &Cluster) -> Result<String> {
        Ok(self
            .render(&[cluster], &Overrides::default(), &RenderOptions::default())?
            .into_iter()
            .next()
            .map(|m| m.text)
            .unwrap_or_default())
    }

    /// Renders clusters with the fleet's templates, in parallel; the result
    /// keeps the order of `clusters`. Values files shared between clusters
    /// are read once. Every failing cluster is logged; the first is the
    /// error.
    pub fn render(
        &self,
        clusters: &[&Cluster],
        overrides: &Overrides,
        options: &RenderOptions,
    ) -> Result<Vec<RenderedManifest>> {
        let templates = TemplateSet::load(&self.templates, &self.snippets)?;
        let cache = LayerCache::default();
        let results = crate::pool::bounded(clusters, crate::pool::cpus(), |cluster| {
            Some(
                self.context_cached(cluster, overrides, &cache)
                    .and_then(|context| {
                        templates
                            .render(&context, options)
                            .map_err(|e| cache.sensitive().scrub(&context, e))
                    })
                    .map(|text| RenderedManifest {
                        cluster: cluster.name.clone(),
                        text,
                    }),
            )
        });
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
/// threads, with the keys Terraform layers mark sensitive.
#[derive(Default)]
struct LayerCache {
    loaded: Mutex<HashMap<PathBuf, (Layer, Sensitive)>>,
}

impl LayerCache {
    fn load(&self, source: &ValuesSource) -> Result<Layer> {
        let path = source.path();
        if let Some((layer, _)) = self.lock().get(path) {
            return Ok(layer.clone());
        }
        let (layer, sensitive) = match source {
            ValuesSource::File(path) => (
                Layer {
                    origin: path.display().to_string(),
                    values: values::load_values_file(path)?,
                },
                Sensitive::default(),
            ),
            ValuesSource::TerraformOutput(path) => {
                let outputs = values::read_terraform_output(path)?;
                (outputs.layer, outputs.sensitive)
            }
        };
        self.lock()
            .insert(path.to_path_buf(), (layer.clone(), sensitive));
        Ok(layer)
    }

    /// Every sensitive key of the layers loaded so far.
    fn sensitive(&self) -> Sensitive {
        let mut all = Sensitive::default();
        for (_, sensitive) in self.lock().values() {
            all.extend(sensitive);
        }
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Layer, Sensitive)>> {
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
        Value::String(s) => format!("`{}`", crate::text::escape_controls(s)),
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
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

/// Colours a unified diff the way `git diff` does.
fn colorize_diff(text: &str) -> String {
    use anstyle::{AnsiColor, Style};
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let style = if line.starts_with("+++") || line.starts_with("---") {
            Style::new().bold()
        } else if line.starts_with('+') {
            AnsiColor::Green.on_default()
        } else if line.starts_with('-') {
            AnsiColor::Red.on_default()
        } else if line.starts_with("@@") {
            AnsiColor::Cyan.on_default()
        } else {
            Style::new()
        };
        let body = line.strip_suffix('\n').unwrap_or(line);
        if style == Style::new() {
            out.push_str(line);
            continue;
        }
        out.push_str(&format!("{style}{body}{style:#}"));
        if line.ends_with('\n') {
            out.push('\n');
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
