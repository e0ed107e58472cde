//! `kops toolbox template` compatibility: values files, Terraform outputs,
//! `--set`, `--set-string` and `--name` turned into one context, rendered
//! without a fleet file.

use std::path::PathBuf;

use crate::errors::Result;
use crate::render::{RenderOptions, TemplateSet};
use crate::values::{self, Map, Sensitive, Source, Value};

/// Everything `kopsci render --template …` was given.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--values` and `--values-terraform`, in command-line order.
    pub values: Vec<Source>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub templates: Vec<PathBuf>,
    pub snippets: Vec<PathBuf>,
    pub cluster_name: Option<String>,
    pub options: RenderOptions,
}

/// The template context of a request, and which of its keys must never be
/// printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub values: Map,
    pub sensitive: Sensitive,
}

/// Builds the template context the way kOps does
/// (cmd/kops/toolbox_template.go): values files merged in order, then every
/// `--set`, then every `--set-string`, then `clusterName` set from `--name`
/// when it is given, over whatever the values said.
pub fn context(request: &Request) -> Result<Context> {
    let (layers, sensitive) = values::load_sources(&request.values)?;
    let mut context = values::merge_layers(&layers);
    for expr in &request.set {
        values::apply_set(expr, true, &mut context)?;
    }
    for expr in &request.set_string {
        values::apply_set(expr, false, &mut context)?;
    }
    // Old kOps assigned `context["clusterName"] = options.clusterName` after
    // the values and `--set`s, so the flag won; current kOps keeps a string
    // `clusterName` from the values and uses the flag only without one.
    // kopsci follows the old rule (issue 14): the name on the command line
    // is the one rendered. `migrate command` refuses the disagreement
    // instead, as a fleet has one name. Without `--name` kOps would
    // take the name from its kubeconfig; kopsci keeps what the values say,
    // and leaves `clusterName` undefined when they say nothing, so strict
    // rendering names it instead of rendering an empty string.
    if let Some(name) = &request.cluster_name {
        // Said, not refused: a kops release that lets the values win would
        // render the other name from the same command line.
        if let Some(Value::String(from_values)) = context.get("clusterName")
            && from_values != name
        {
            tracing::warn!(
                "--name {} overrides clusterName `{}` from the values (older kops toolbox template does the same; newer releases keep the values' name)",
                crate::text::escape_controls(name),
                crate::text::escape_controls(from_values)
            );
        }
        context.insert("clusterName".to_string(), Value::String(name.clone()));
    }
    Ok(Context {
        values: context,
        sensitive,
    })
}

/// The merged value at dotted `key` for `--config-value`, refusing a
/// sensitive one: a CI log is no place for it.
pub fn config_value<'a>(context: &'a Context, key: &str) -> Result<Option<&'a Value>> {
    context.sensitive.check_printable(key)?;
    Ok(values::lookup(&context.values, key))
}

/// Renders the request's templates with an already built context; an
/// error never quotes a sensitive value.
pub fn render(request: &Request, context: &Context) -> Result<String> {
    TemplateSet::load(&request.templates, &request.snippets)?
        .render(&context.values, &request.options)
        .map_err(|e| context.sensitive.scrub(&context.values, e))
}
