//! `kops toolbox template` compatibility: values files, `--set`,
//! `--set-string` and `--name` turned into one context, rendered without a
//! fleet file.

use std::path::PathBuf;

use crate::errors::Result;
use crate::render::{RenderOptions, TemplateSet};
use crate::values::{self, Map, Value};

/// Everything `kopsci render --template …` was given.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub templates: Vec<PathBuf>,
    pub snippets: Vec<PathBuf>,
    pub cluster_name: Option<String>,
    pub options: RenderOptions,
}

/// Builds the template context the way kOps does: values files merged in
/// order, then every `--set`, then every `--set-string`; `clusterName`
/// comes from the values when they set it, else from `--name`.
pub fn context(request: &Request) -> Result<Map> {
    let layers = values::load_layers(&request.values)?;
    let mut context = values::merge_layers(&layers);
    for expr in &request.set {
        values::apply_set(expr, true, &mut context)?;
    }
    for expr in &request.set_string {
        values::apply_set(expr, false, &mut context)?;
    }
    // kOps keeps a string `clusterName` from the values and only falls back
    // to `--name`. Without either, `clusterName` stays undefined so strict
    // rendering names it instead of rendering an empty string.
    if let Some(name) = &request.cluster_name
        && !matches!(context.get("clusterName"), Some(Value::String(_)))
    {
        context.insert("clusterName".to_string(), Value::String(name.clone()));
    }
    Ok(context)
}

/// Renders the request's templates with an already built context.
pub fn render(request: &Request, context: &Map) -> Result<String> {
    TemplateSet::load(&request.templates, &request.snippets)?.render(context, &request.options)
}
