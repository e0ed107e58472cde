//! `kopsci render`: templates + values → kOps manifests, either like
//! `kops toolbox template` (`--template`, `--values`, …) or from the fleet
//! file (`render CLUSTER…`, `--all`, `--check`, `--explain`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgAction, ArgMatches, Args, FromArgMatches};
use kopsci_core::Error;
use kopsci_core::fleet;
use kopsci_core::render::{self, RenderOptions};
use kopsci_core::toolbox;
use kopsci_core::values::{self, Source};

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Render kOps manifests from Jinja templates and layered values.
///
/// With `--template`, behaves like `kops toolbox template` (same flags, same
/// meaning, Jinja instead of Go templates). Without it, renders clusters of
/// the fleet file (kopsci.yaml).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Like `kops toolbox template`
  kopsci render --values values.yaml --values env/ --set kubernetesVersion=1.34.1 \\
      --snippets snippets/ --template cluster.yaml.j2 --template instancegroups/ --out cluster.yaml

  # Terraform outputs as values (`{{ vpc_id }}`, not `{{ vpc_id.value }}`)
  terraform output -json > tf.json
  kopsci render --values-terraform tf.json --values overrides.yaml --template cluster.yaml.j2

  # Fleet mode (kopsci.yaml)
  kopsci render dev-a.k8s.example.com          One cluster to stdout
  kopsci render --all --out manifests          Every cluster to manifests/<cluster>.yaml
  kopsci render --check                        Exit 3 with a diff if manifests/ is stale
  kopsci render --explain spec.kubernetesVersion dev-a.k8s.example.com
  kopsci render --config-value kubernetesVersion --values values.yaml

Render limits (per cluster manifest, all templates and snippets together):
  5,000,000 steps (1,000 per include), 16 MiB of output, include depth 64.
  A template that exceeds one fails: `template X exceeded the render budget`.")]
pub struct RenderFlags {
    /// Fleet clusters to render (fleet mode).
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,

    /// Render every cluster of the fleet.
    #[arg(long, conflicts_with = "clusters")]
    pub all: bool,

    /// Values file or directory (repeatable, or comma-separated); later layers win.
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub values: Vec<PathBuf>,

    /// `terraform output -json` file as a values layer: `{"x": {"value": V, …}}` gives `x: V`;
    /// layered among `--values` in command-line order; sensitive outputs are never printed.
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub values_terraform: Vec<PathBuf>,

    /// Set values: `a.b=c,list={1,2},list[3]=x`; `true`/`false`/`null` and integers are typed.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Like `--set`, but every value is a string.
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,

    /// Template file or directory (repeatable, or comma-separated), rendered in order.
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub template: Vec<PathBuf>,

    /// Snippet file or directory; snippets are named by file basename for `include("name")`.
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub snippets: Vec<PathBuf>,

    /// Fail on undefined variables (`--fail-on-missing=false` to render them empty).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    pub fail_on_missing: bool,

    /// Parse every document and write it back as normalised YAML.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub format_yaml: bool,

    /// Output file (fleet mode: a directory for `<cluster>.yaml` files). Default: stdout.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Deprecated alias of `--out`.
    #[arg(long, value_name = "PATH", hide = true, conflicts_with = "out")]
    pub output: Option<PathBuf>,

    /// Print the merged value at this dotted key (`null` when absent) instead of rendering.
    #[arg(long, value_name = "KEY")]
    pub config_value: Option<String>,

    /// Cluster name: sets `clusterName` over the values and `--set` (as kOps does);
    /// fleet mode: the cluster to render when none is named.
    #[arg(long, env = "KOPS_CLUSTER_NAME", value_name = "CLUSTER")]
    pub name: Option<String>,

    /// Accepted for `kops toolbox template` compatibility; kopsci renders
    /// offline, so `Channel*` functions are not available.
    #[arg(long, value_name = "CHANNEL", hide_short_help = true)]
    pub channel: Option<String>,

    /// Fleet mode: exit 3 and print a diff for every cluster whose committed
    /// manifest differs from a fresh render.
    #[arg(long, conflicts_with_all = ["config_value", "explain"])]
    pub check: bool,

    /// Fleet mode: show the value every layer gives KEY (dotted path) and which wins.
    #[arg(long, value_name = "KEY", conflicts_with = "config_value")]
    pub explain: Option<String>,
}

/// `kopsci render`'s arguments: the flags, and `--values` and
/// `--values-terraform` merged into one list in command-line order (clap
/// keeps each flag's values apart; their indices say how they interleave).
#[derive(Debug)]
pub struct RenderArgs {
    pub flags: RenderFlags,
    pub sources: Vec<Source>,
}

impl FromArgMatches for RenderArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = RenderFlags::from_arg_matches(matches)?;
        let sources = ordered_sources(matches);
        Ok(RenderArgs { flags, sources })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.flags.update_from_arg_matches(matches)?;
        self.sources = ordered_sources(matches);
        Ok(())
    }
}

impl Args for RenderArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        RenderFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RenderFlags::augment_args_for_update(cmd)
    }
}

/// `--values` and `--values-terraform` values, ordered by where each stood
/// on the command line.
fn ordered_sources(matches: &ArgMatches) -> Vec<Source> {
    let mut indexed: Vec<(usize, Source)> = Vec::new();
    let mut collect = |id: &str, make: fn(PathBuf) -> Source| {
        if let (Some(indices), Some(paths)) =
            (matches.indices_of(id), matches.get_many::<PathBuf>(id))
        {
            indexed.extend(indices.zip(paths.map(|p| make(p.clone()))));
        }
    };
    collect("values", Source::File);
    collect("values_terraform", Source::TerraformOutput);
    indexed.sort_by_key(|(index, _)| *index);
    indexed.into_iter().map(|(_, source)| source).collect()
}

impl RenderFlags {
    fn options(&self) -> RenderOptions {
        RenderOptions {
            fail_on_missing: self.fail_on_missing,
            format_yaml: self.format_yaml,
        }
    }

    fn out(&self) -> Option<&PathBuf> {
        self.out.as_ref().or(self.output.as_ref())
    }
}

pub fn run(global: &GlobalArgs, args: RenderArgs, color: bool) -> anyhow::Result<Exit> {
    let RenderArgs {
        flags: args,
        sources,
    } = args;
    if args.output.is_some() {
        tracing::warn!("--output is deprecated; use --out");
    }
    if args.channel.is_some() {
        tracing::warn!(
            "--channel has no effect: kopsci renders offline and provides no Channel* functions"
        );
    }
    // Any of the `kops toolbox template` inputs means toolbox mode; the
    // fleet file is only read when none is given.
    if args.template.is_empty() && sources.is_empty() && args.snippets.is_empty() {
        fleet_mode(global, args, color)
    } else {
        toolbox_mode(args, sources)
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Error::Usage(message.into()).into()
}

/// `kops toolbox template` compatibility: no fleet file involved.
fn toolbox_mode(args: RenderFlags, sources: Vec<Source>) -> anyhow::Result<Exit> {
    if !args.clusters.is_empty() || args.all || args.check || args.explain.is_some() {
        return Err(usage(
            "CLUSTER, --all, --check and --explain use the fleet file and cannot be combined with --template, --values, --values-terraform or --snippets",
        ));
    }
    let request = toolbox::Request {
        values: sources,
        set: args.set.clone(),
        set_string: args.set_string.clone(),
        templates: args.template.clone(),
        snippets: args.snippets.clone(),
        cluster_name: args.name.clone(),
        options: args.options(),
    };
    let context = toolbox::context(&request)?;
    if let Some(key) = &args.config_value {
        print_value(toolbox::config_value(&context, key)?)?;
        return Ok(Exit::Success);
    }
    if request.templates.is_empty() {
        return Err(usage(
            "nothing to render: give --template (or --config-value KEY to print a value)",
        ));
    }
    let rendered = toolbox::render(&request, &context)?;
    emit(args.out(), &rendered)?;
    Ok(Exit::Success)
}

fn fleet_mode(global: &GlobalArgs, args: RenderFlags, color: bool) -> anyhow::Result<Exit> {
    let fleet = global.load_fleet()?;
    let overrides = fleet::Overrides {
        set: args.set.clone(),
        set_string: args.set_string.clone(),
    };
    let mut names = args.clusters.clone();
    if names.is_empty()
        && !args.all
        && let Some(name) = &args.name
    {
        names.push(name.clone());
    }
    // `absent: true` clusters are retired: nothing of theirs is rendered.
    let selected = if args.all || (names.is_empty() && args.check) {
        fleet.present_clusters().collect::<Vec<_>>()
    } else if names.is_empty() {
        return Err(usage(format!(
            "name the clusters to render or use --all (the fleet has: {})",
            fleet.cluster_names().join(", ")
        )));
    } else {
        let selected = fleet.select(&names)?;
        if let Some(absent) = selected.iter().find(|c| c.absent) {
            return Err(usage(format!(
                "cluster `{}` is `absent: true` in the fleet: a retired cluster has no manifest",
                absent.name
            )));
        }
        selected
    };

    if let Some(key) = &args.explain {
        let mut out = std::io::stdout().lock();
        for cluster in &selected {
            let explanation = fleet.explain(cluster, &overrides, key)?;
            write!(
                out,
                "{}",
                fleet::format_explanation(&cluster.name, &explanation)?
            )?;
        }
        return Ok(Exit::Success);
    }
    if let Some(key) = &args.config_value {
        let [cluster] = selected.as_slice() else {
            return Err(usage("--config-value needs exactly one cluster"));
        };
        fleet.sensitive(cluster)?.check_printable(key)?;
        let context = fleet.context(cluster, &overrides)?;
        print_value(values::lookup(&context, key))?;
        return Ok(Exit::Success);
    }

    let rendered = fleet.render(&selected, &overrides, &args.options())?;

    if args.check {
        let dir = args.out().cloned().unwrap_or_else(|| fleet.manifests_dir());
        let stale = fleet::check(&dir, &rendered)?;
        let stdout_color = color && std::io::stdout().is_terminal();
        let mut out = std::io::stdout().lock();
        for diff in &stale {
            write!(out, "{}", diff.unified(stdout_color))?;
        }
        if stale.is_empty() {
            eprintln!(
                "{} manifest(s) in {} are up to date",
                rendered.len(),
                dir.display()
            );
            return Ok(Exit::Success);
        }
        eprintln!(
            "{} of {} manifest(s) in {} are out of date; run `kopsci render --all --out {}`",
            stale.len(),
            rendered.len(),
            dir.display(),
            dir.display()
        );
        return Ok(Exit::Differs);
    }

    match args.out() {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Render everything before writing anything: a failing cluster
            // must not leave a half-updated manifests directory.
            for manifest in &rendered {
                render::write_output(
                    &dir.join(format!("{}.yaml", manifest.cluster)),
                    manifest.text.as_bytes(),
                )?;
            }
            eprintln!(
                "rendered {} cluster(s) into {}",
                rendered.len(),
                dir.display()
            );
        }
        None => {
            let joined = rendered
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
                .join("---\n");
            emit(None, &joined)?;
        }
    }
    Ok(Exit::Success)
}

/// Prints a `--config-value` result: the value, or `null` when absent.
fn print_value(value: Option<&values::Value>) -> anyhow::Result<()> {
    let text = match value {
        Some(value) => values::to_display_yaml(value)?,
        None => "null".to_string(),
    };
    println!("{text}");
    Ok(())
}

/// Writes to `--out` atomically (keeping an existing file's mode), or to
/// stdout.
fn emit(out: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => render::write_output(path, text.as_bytes())?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
