//! `kopsci migrate`: `kops toolbox template` Go templates and command lines
//! converted into Jinja templates and a fleet file that render the same.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand, ValueEnum};
use kopsci_core::Error;
use kopsci_core::migrate::{self, MapOrder, Role, command};

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Move from `kops toolbox template` to kopsci: convert Go templates to
/// Jinja, and kops command lines to a fleet file.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Convert a directory of Go templates and snippets
  kopsci migrate template templates/ snippets/ --out jinja/

  # Turn the kops line of a Makefile into a fleet (kopsci.yaml, converted
  # templates, a values layer for --set) in fleet/
  kopsci migrate command --out fleet -- kops toolbox template \\
      --values values.yaml --values env/prod.yaml --set replicas=3 \\
      --template templates/ --snippets snippets/ --name prod.example.com --out cluster.yaml
  kopsci --fleet fleet/kopsci.yaml render prod.example.com

  # The same from a quoted line; without --out the fleet is printed
  kopsci migrate command -- \"kops toolbox template --values v.yaml --template t.yaml --name a.example.com\"

See docs/migrate.md for what converts to what.")]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    Template(TemplateArgs),
    Command(CommandArgs),
}

/// How `range` visits a map in the converted templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapOrderArg {
    /// Sorted by key, as Go (and so kOps) does: the same output as kops.
    Sorted,
    /// In the order the values files list the keys (kopsci keeps it; kops
    /// cannot): output differs from kops wherever a template ranges over a
    /// map.
    Values,
}

impl From<MapOrderArg> for MapOrder {
    fn from(arg: MapOrderArg) -> MapOrder {
        match arg {
            MapOrderArg::Sorted => MapOrder::Sorted,
            MapOrderArg::Values => MapOrder::Values,
        }
    }
}

/// Convert Go template files (templates and snippets) to Jinja.
///
/// Every file is converted in memory first; when any construct cannot be
/// converted exactly, each one is reported as `file:line:col: unsupported:
/// …` and nothing is written. File names are kept (snippets are included by
/// file name).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci migrate template cluster.yaml instancegroups/ --out jinja/
  kopsci migrate template snippets/ --out jinja-snippets/ --fail-on-missing=false")]
pub struct TemplateArgs {
    /// Go template files or directories (walked recursively, in lexical order).
    #[arg(value_name = "FILE|DIR", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Directory for the converted files (a file goes to DIR/<name>, a
    /// directory's files to DIR/<their path inside it>).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The kops --fail-on-missing the templates were rendered with
    /// (`=false`: a missing key anywhere in `.a.b.c` is no value, as in kops).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    pub fail_on_missing: bool,

    /// How `range` visits a map.
    #[arg(long, value_enum, default_value_t = MapOrderArg::Sorted, value_name = "ORDER")]
    pub map_order: MapOrderArg,

    /// Replace existing files in --out.
    #[arg(long)]
    pub force: bool,
}

/// Turn a `kops toolbox template` command line into a fleet.
///
/// Writes DIR/kopsci.yaml (one environment `default`, one cluster), the
/// converted templates (DIR/templates/) and snippets (DIR/snippets/), and
/// DIR/values/kops-set.yaml for --set/--set-string. Values files stay where
/// they are. Without --out, prints the fleet file and writes nothing.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci migrate command --out fleet -- kops toolbox template --values v.yaml \\
      --template t/ --snippets s/ --set k=v --name a.example.com --out a.yaml
  kopsci migrate command -- \"$(grep 'kops toolbox template' Makefile)\"")]
pub struct CommandArgs {
    /// Directory for the fleet (created; kopsci.yaml, templates/, snippets/, values/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// How `range` visits a map in the converted templates.
    #[arg(long, value_enum, default_value_t = MapOrderArg::Sorted, value_name = "ORDER")]
    pub map_order: MapOrderArg,

    /// Replace existing files in --out.
    #[arg(long)]
    pub force: bool,

    /// The kops command line, after `--` (or as one quoted argument).
    #[arg(last = true, required = true, value_name = "KOPS COMMAND")]
    pub kops: Vec<String>,
}

pub fn run(_global: &GlobalArgs, args: MigrateArgs) -> anyhow::Result<Exit> {
    match args.command {
        MigrateCommand::Template(args) => template(args),
        MigrateCommand::Command(args) => command_line(args),
    }
}

fn template(args: TemplateArgs) -> anyhow::Result<Exit> {
    let (jobs, hidden) = migrate::plan(&args.inputs, &args.out, Role::Any)?;
    if jobs.is_empty() {
        return Err(Error::Usage("no files to convert".into()).into());
    }
    for path in &hidden {
        eprintln!(
            "note: {}: kops reads hidden files in template directories, kopsci skips them: not converted",
            path.display()
        );
    }
    let outputs = migrate::convert_jobs(&jobs, args.map_order.into(), args.fail_on_missing)?;
    migrate::write_outputs(&outputs, &args.inputs, args.force)?;
    for output in &outputs {
        for note in &output.converted.notes {
            eprintln!("{note}");
        }
    }
    eprintln!(
        "converted {} file(s) into {}",
        outputs.len(),
        args.out.display()
    );
    Ok(Exit::Success)
}

fn command_line(args: CommandArgs) -> anyhow::Result<Exit> {
    let words = match args.kops.as_slice() {
        [one] if one.contains(char::is_whitespace) => command::split_command_line(one)?,
        many => many.to_vec(),
    };
    let kops = command::parse_kops_command(&words)?;
    let cwd = std::env::current_dir()?;
    let request = command::Request {
        out: args.out.clone().unwrap_or_else(|| PathBuf::from(".")),
        cwd,
        map_order: args.map_order.into(),
        env_cluster_name: std::env::var("KOPS_CLUSTER_NAME")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let migration = command::migrate(&kops, &request)?;
    match &args.out {
        Some(out) => {
            let mut sources = kops.templates.clone();
            sources.extend(kops.snippets.iter().cloned());
            migration.write(out, &sources, args.force)?;
            for note in &migration.notes {
                print_note(note);
            }
            eprintln!(
                "wrote {} (cluster {}) and {} converted file(s); render with `kopsci --fleet {} render {}`",
                out.join("kopsci.yaml").display(),
                migration.cluster,
                migration.outputs.len(),
                out.join("kopsci.yaml").display(),
                migration.cluster
            );
        }
        None => {
            for note in &migration.notes {
                print_note(note);
            }
            if let Some((_, text)) = &migration.set_layer {
                eprintln!(
                    "note: with --out, {} would hold:\n{text}",
                    command::SET_LAYER
                );
            }
            eprintln!(
                "note: nothing written ({} template and snippet file(s) convert): pass --out DIR to write the fleet",
                migration.outputs.len()
            );
            print!("{}", migration.fleet);
        }
    }
    Ok(Exit::Success)
}

fn print_note(note: &str) {
    if note.contains(": note: ") {
        eprintln!("{note}");
    } else {
        eprintln!("note: {note}");
    }
}
