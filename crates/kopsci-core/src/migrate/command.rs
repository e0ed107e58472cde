//! `kopsci migrate command`: a `kops toolbox template` command line (as in
//! a Makefile) turned into a fleet: a `kopsci.yaml` with the same
//! templates (converted), snippets and values layers in kOps' order, one
//! environment and one cluster, plus a values layer for `--set` and
//! `--set-string`.
//!
//! The command line is read the way kops reads it (cobra/pflag): flags
//! anywhere after `kops`, `--flag value` or `--flag=value`, comma-separated
//! lists for `--values`/`--template`/`--snippets`, `--output` as the old
//! name of `--out`. A flag kops does not document is an error, never
//! skipped.

use std::path::{Component, Path, PathBuf};

use crate::errors::{Error, Result};
use crate::values::{self, Map, Value};

use super::{Job, MapOrder, Role};

/// What a `kops toolbox template` command line asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KopsCommand {
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub templates: Vec<PathBuf>,
    pub snippets: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    /// `--name`, the positional CLUSTER, or `KOPS_CLUSTER_NAME=` before the
    /// command, in kops' order of preference.
    pub name: Option<String>,
    pub state: Option<String>,
    pub channel: Option<String>,
    pub fail_on_missing: bool,
    pub format_yaml: bool,
    /// Flags accepted but without meaning for a fleet (logging, kops
    /// config file), as written.
    pub ignored: Vec<String>,
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// Splits one command line the way a POSIX shell does for the parts a
/// Makefile uses: whitespace, single and double quotes, backslash escapes
/// and `\`-newline continuations. Expansions (`$VAR`, `$(make var)`,
/// backquotes) cannot be reproduced and are refused.
pub fn split_command_line(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
                None => return Err(usage("the command line ends with a lone backslash")),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(usage("unterminated single quote in the command line")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => {
                                return Err(usage("unterminated double quote in the command line"));
                            }
                        },
                        Some(c @ ('$' | '`')) => return Err(expansion(c)),
                        Some(c) => word.push(c),
                        None => return Err(usage("unterminated double quote in the command line")),
                    }
                }
            }
            '$' | '`' => return Err(expansion(c)),
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            ';' | '|' | '&' | '<' | '>' => {
                return Err(usage(format!(
                    "the command line holds the shell operator `{c}`: give only the kops command"
                )));
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn expansion(c: char) -> Error {
    usage(format!(
        "the command line uses a shell or make expansion (`{c}…`): replace it by its value first"
    ))
}

#[derive(Clone, Copy)]
enum FlagKind {
    /// pflag `StringSlice`: repeatable, comma-separated.
    List,
    /// pflag `StringArray`: repeatable, taken whole (`--set a=1,b=2`).
    Array,
    String,
    Bool,
    /// Global flags with no effect on a render.
    Ignored,
    IgnoredBool,
}

/// The flags of `kops toolbox template` and kops' global flags, as the kOps
/// CLI reference lists them.
fn flag_kind(name: &str) -> Option<FlagKind> {
    Some(match name {
        "values" | "template" | "snippets" => FlagKind::List,
        "set" | "set-string" => FlagKind::Array,
        "out" | "output" | "channel" | "config-value" | "name" | "state" => FlagKind::String,
        "fail-on-missing" | "format-yaml" | "help" | "h" => FlagKind::Bool,
        "config" | "v" | "alsologtostderrthreshold" => FlagKind::Ignored,
        "legacy_stderr_threshold_behavior" => FlagKind::IgnoredBool,
        _ => return None,
    })
}

const KNOWN_FLAGS: &str = "--values, --set, --set-string, --template, --snippets, --out (--output), --fail-on-missing, --format-yaml, --channel, --config-value, --name, --state, --config, -v";

/// pflag's `strconv.ParseBool`.
fn parse_bool(flag: &str, text: &str) -> Result<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(usage(format!(
            "invalid value `{text}` for --{flag}: expected true or false"
        ))),
    }
}

/// pflag's `StringSlice` splitting (a CSV record: commas, double quotes).
fn split_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                item.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items.push(item);
    items
}

/// Parses `kops … toolbox template …` (optionally after `NAME=value`
/// environment assignments).
pub fn parse_kops_command(words: &[String]) -> Result<KopsCommand> {
    let mut words = words.iter().peekable();
    let mut env_name = None;
    let mut env_state = None;
    let mut ignored = Vec::new();
    // Leading environment assignments.
    while let Some(word) = words.peek() {
        let Some((key, value)) = word.split_once('=') else {
            break;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        match key {
            "KOPS_CLUSTER_NAME" => env_name = Some(value.to_string()),
            "KOPS_STATE_STORE" => env_state = Some(value.to_string()),
            _ => ignored.push(format!("{key}=…")),
        }
        words.next();
    }
    let program = words
        .next()
        .ok_or_else(|| usage("empty command line: expected `kops toolbox template …`"))?;
    if Path::new(program).file_name().and_then(|n| n.to_str()) != Some("kops") {
        return Err(usage(format!(
            "expected a kops command line (`kops toolbox template …`), got `{program}` first"
        )));
    }

    let mut cmd = KopsCommand {
        fail_on_missing: true,
        ignored,
        ..KopsCommand::default()
    };
    let mut positionals: Vec<String> = Vec::new();
    let mut flag_name: Option<String> = None;
    let mut only_positionals = false;
    while let Some(word) = words.next() {
        if only_positionals || !word.starts_with('-') || word == "-" {
            positionals.push(word.clone());
            continue;
        }
        if word == "--" {
            only_positionals = true;
            continue;
        }
        // `--name[=value]`, `-v[=]value`.
        let (name, inline) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else {
            let short = &word[1..];
            let (n, rest) = short.split_at(short.chars().next().map_or(0, char::len_utf8));
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            (n.to_string(), (!rest.is_empty()).then(|| rest.to_string()))
        };
        let kind = flag_kind(&name).ok_or_else(|| {
            usage(format!(
                "unknown flag `{word}` for `kops toolbox template` (it accepts {KNOWN_FLAGS})"
            ))
        })?;
        let take_value = |words: &mut std::iter::Peekable<std::slice::Iter<'_, String>>| {
            inline
                .clone()
                .or_else(|| words.next().cloned())
                .ok_or_else(|| usage(format!("flag needs an argument: --{name}")))
        };
        match kind {
            FlagKind::Bool => {
                let value = match &inline {
                    Some(v) => parse_bool(&name, v)?,
                    None => true,
                };
                match name.as_str() {
                    "fail-on-missing" => cmd.fail_on_missing = value,
                    "format-yaml" => cmd.format_yaml = value,
                    _ => {
                        return Err(usage(
                            "the command line asks for kops' help, which renders nothing",
                        ));
                    }
                }
            }
            FlagKind::IgnoredBool => {
                if let Some(v) = &inline {
                    parse_bool(&name, v)?;
                }
                cmd.ignored.push(word.clone());
            }
            FlagKind::Ignored => {
                let value = take_value(&mut words)?;
                cmd.ignored.push(format!("{word} {value}"));
            }
            FlagKind::List => {
                let value = take_value(&mut words)?;
                let paths = split_list(&value).into_iter().map(PathBuf::from);
                match name.as_str() {
                    "values" => cmd.values.extend(paths),
                    "template" => cmd.templates.extend(paths),
                    _ => cmd.snippets.extend(paths),
                }
            }
            FlagKind::Array => {
                let value = take_value(&mut words)?;
                if name == "set" {
                    cmd.set.push(value);
                } else {
                    cmd.set_string.push(value);
                }
            }
            FlagKind::String => {
                let value = take_value(&mut words)?;
                match name.as_str() {
                    "out" | "output" => cmd.out = Some(PathBuf::from(value)),
                    "channel" => cmd.channel = Some(value),
                    "name" => flag_name = Some(value),
                    "state" => cmd.state = Some(value),
                    _ => {
                        return Err(usage(
                            "the command line uses --config-value, which prints one value and renders nothing: use `kopsci render --config-value KEY` instead",
                        ));
                    }
                }
            }
        }
    }
    match positionals.as_slice() {
        [toolbox, template, rest @ ..] if toolbox == "toolbox" && template == "template" => {
            match rest {
                [] => {}
                [cluster] => {
                    if let Some(flag) = &flag_name
                        && flag != cluster
                    {
                        return Err(usage(format!(
                            "the command line names the cluster twice: --name {flag} and {cluster}"
                        )));
                    }
                    flag_name = Some(cluster.clone());
                }
                [_, extra, ..] => {
                    return Err(usage(format!(
                        "unexpected argument `{extra}`: `kops toolbox template` takes at most one CLUSTER"
                    )));
                }
            }
        }
        _ => {
            return Err(usage(format!(
                "expected `kops toolbox template …`, got `kops {}`",
                positionals.join(" ")
            )));
        }
    }
    cmd.name = flag_name.or(env_name);
    cmd.state = cmd.state.or(env_state);
    if cmd.templates.is_empty() {
        return Err(usage(
            "the command line has no --template: there is nothing to migrate",
        ));
    }
    Ok(cmd)
}

/// The files a migration writes, in memory until [`write`](Migration::write).
#[derive(Debug)]
pub struct Migration {
    /// The cluster the fleet declares.
    pub cluster: String,
    /// `kopsci.yaml`'s text.
    pub fleet: String,
    /// The `--set`/`--set-string` values layer: its path and text.
    pub set_layer: Option<(PathBuf, String)>,
    /// The converted templates and snippets.
    pub outputs: Vec<super::Output>,
    /// Everything the user must know, one message each.
    pub notes: Vec<String>,
}

/// Options of `kopsci migrate command`.
#[derive(Debug, Clone)]
pub struct Request {
    /// The directory the fleet goes to (`kopsci.yaml`, `templates/`,
    /// `snippets/`, `values/`).
    pub out: PathBuf,
    /// The directory the kops command ran in (its paths are relative to it).
    pub cwd: PathBuf,
    pub map_order: MapOrder,
    /// `KOPS_CLUSTER_NAME` of the environment, the last place kops looks.
    pub env_cluster_name: Option<String>,
}

/// The set layer's file name inside the fleet directory.
pub const SET_LAYER: &str = "values/kops-set.yaml";

/// Plans the fleet for `cmd`: converts the templates and snippets, builds
/// the `--set` layer over the values, and writes `kopsci.yaml`'s text.
pub fn migrate(cmd: &KopsCommand, request: &Request) -> Result<Migration> {
    let mut notes = Vec::new();
    let absolute = |p: &Path| normalize(&request.cwd.join(p));
    let out = absolute(&request.out);

    // Values, in kOps' order: files, every --set, every --set-string.
    let value_paths: Vec<PathBuf> = cmd.values.iter().map(|p| absolute(p)).collect();
    let layers = values::load_layers(&value_paths)?;
    let mut merged = values::merge_layers(&layers);
    let mut set_values = Map::new();
    for (exprs, typed) in [(&cmd.set, true), (&cmd.set_string, false)] {
        for expr in exprs {
            let layer = values::set_layer(expr, typed, &merged)?;
            values::merge(&mut merged, layer.values.clone());
            values::merge(&mut set_values, layer.values);
        }
    }

    // The cluster name, as kops decides it: a string `clusterName` in the
    // values wins; otherwise the command's name.
    let from_values = match merged.get("clusterName") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let from_command = cmd.name.clone().or_else(|| {
        request.env_cluster_name.clone().inspect(|name| {
            notes.push(format!(
                "the cluster name `{name}` comes from KOPS_CLUSTER_NAME in this environment; check it is the one the command ran with"
            ));
        })
    });
    let cluster = match (from_values, from_command) {
        (Some(v), Some(c)) if v != c => {
            return Err(usage(format!(
                "the values set clusterName `{v}` but the command names the cluster `{c}`: a kopsci fleet has one name per cluster; make them agree"
            )));
        }
        (Some(v), _) => v,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(usage(
                "no cluster name: the command has no --name, CLUSTER argument or KOPS_CLUSTER_NAME, and the values set no clusterName (kops would have asked your kubeconfig); pass --name to the kops command",
            ));
        }
    };

    // Templates and snippets: converted into the fleet directory.
    let (template_jobs, template_entries, hidden_t) = place(
        &cmd.templates,
        &out.join("templates"),
        Role::Template,
        &absolute,
    )?;
    let (snippet_jobs, snippet_entries, hidden_s) = place(
        &cmd.snippets,
        &out.join("snippets"),
        Role::Snippet,
        &absolute,
    )?;
    for hidden in hidden_t.iter().chain(&hidden_s) {
        notes.push(format!(
            "{}: kops reads hidden files in template and snippet directories, kopsci skips them: not converted",
            hidden.display()
        ));
    }
    let mut jobs = template_jobs;
    jobs.extend(snippet_jobs);
    for job in &mut jobs {
        // Name inputs the way the command line did: relative to its directory.
        let shown = relative(&job.input, &normalize(&request.cwd));
        if !shown.starts_with("..") {
            job.origin = Some(shown);
        }
    }
    let outputs = super::convert_jobs(&jobs, request.map_order, cmd.fail_on_missing)?;
    for output in &outputs {
        notes.extend(output.converted.notes.iter().map(ToString::to_string));
    }

    let set_layer = if cmd.set.is_empty() && cmd.set_string.is_empty() {
        None
    } else {
        let text = format!(
            "# The --set and --set-string values of the kops command line, applied\n# after the values files as kops applies them. Review before committing:\n# command-line values can be secrets.\n{}",
            crate::yaml::to_string(&Value::Object(set_values))?
        );
        Some((out.join(SET_LAYER), text))
    };

    let rel = |p: &Path| relative(p, &out);
    let mut fleet = String::new();
    fleet.push_str("# Migrated by `kopsci migrate command` from:\n#   kops toolbox template");
    for v in &cmd.values {
        fleet.push_str(&format!(" --values {}", v.display()));
    }
    for s in &cmd.set {
        fleet.push_str(&format!(" --set {}", values::redact_set_values(s)));
    }
    for s in &cmd.set_string {
        fleet.push_str(&format!(" --set-string {}", values::redact_set_values(s)));
    }
    for t in &cmd.templates {
        fleet.push_str(&format!(" --template {}", t.display()));
    }
    for s in &cmd.snippets {
        fleet.push_str(&format!(" --snippets {}", s.display()));
    }
    fleet.push_str(&format!(" --name {cluster}\n"));
    fleet.push_str("# Render with `kopsci render ");
    fleet.push_str(&cluster);
    if !cmd.fail_on_missing {
        fleet.push_str(" --fail-on-missing=false");
    }
    if cmd.format_yaml {
        fleet.push_str(" --format-yaml");
    }
    fleet.push_str("`; see docs/fleet-file.md.\n");
    if let Some(state) = &cmd.state {
        fleet.push_str(&format!("state: {}\n", yaml_scalar(state)?));
    }
    fleet.push_str("templates:\n");
    for entry in &template_entries {
        fleet.push_str(&format!("  - {}\n", yaml_scalar(&rel(entry))?));
    }
    if !snippet_entries.is_empty() {
        fleet.push_str("snippets:\n");
        for entry in &snippet_entries {
            fleet.push_str(&format!("  - {}\n", yaml_scalar(&rel(entry))?));
        }
    }
    if !value_paths.is_empty() || set_layer.is_some() {
        fleet.push_str("values:\n");
        for path in &value_paths {
            fleet.push_str(&format!("  - {}\n", yaml_scalar(&rel(path))?));
        }
        if set_layer.is_some() {
            fleet.push_str(&format!("  - {SET_LAYER}\n"));
        }
    }
    if let Some(file) = &cmd.out {
        // kops wrote one file; a fleet keeps a directory of `<cluster>.yaml`:
        // the file's own directory, unless that is the top of the repository.
        let dir = absolute(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| out.clone());
        let manifests = if dir == normalize(&request.cwd) {
            out.join("manifests")
        } else {
            fleet.push_str(&format!("manifests: {}\n", yaml_scalar(&rel(&dir))?));
            dir
        };
        if manifests.join(format!("{cluster}.yaml")) != absolute(file) {
            notes.push(format!(
                "kops wrote {}; `kopsci render --all` writes {}/{cluster}.yaml (relative to the fleet file); `kopsci render {cluster} > {}` writes kops' file",
                file.display(),
                rel(&manifests),
                file.display()
            ));
        }
    }
    fleet.push_str("environments:\n  default: {}\n");
    fleet.push_str(&format!(
        "clusters:\n  - name: {}\n    environment: default\n",
        yaml_scalar(&cluster)?
    ));

    if !cmd.fail_on_missing {
        notes.push(
            "the command renders with --fail-on-missing=false: the fleet file cannot say so, pass it to `kopsci render`".to_string(),
        );
    }
    if cmd.format_yaml {
        notes.push(
            "the command renders with --format-yaml: pass it to `kopsci render` (kopsci formats with its own YAML writer: key order and quoting can differ from kops')".to_string(),
        );
    }
    if cmd.channel.is_some() {
        notes.push(
            "--channel only matters for kOps' Channel* functions, which kopsci replaces by values"
                .to_string(),
        );
    }
    for ignored in &cmd.ignored {
        notes.push(format!("`{ignored}` does not affect rendering: ignored"));
    }

    // The fleet must load as it will be written.
    crate::fleet::Fleet::parse(&fleet, &out.join("kopsci.yaml"), &out)?;

    Ok(Migration {
        cluster,
        fleet,
        set_layer,
        outputs,
        notes,
    })
}

impl Migration {
    /// Writes the fleet: every converted file, the set layer and
    /// `kopsci.yaml` (last, so a fleet file never points at missing files).
    /// Nothing is written if any target exists and `force` is false, or if
    /// a conversion would replace its own Go template.
    pub fn write(&self, out: &Path, sources: &[PathBuf], force: bool) -> Result<()> {
        let fleet_path = out.join("kopsci.yaml");
        let mut extra: Vec<&Path> = vec![&fleet_path];
        if let Some((path, _)) = &self.set_layer {
            extra.push(path);
        }
        if !force {
            for path in extra {
                if path.exists() {
                    return Err(usage(format!(
                        "{} exists: pass --force to replace it",
                        path.display()
                    )));
                }
            }
        }
        super::write_outputs(&self.outputs, sources, force)?;
        if let Some((path, text)) = &self.set_layer {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            crate::fsutil::write_atomic(path, text.as_bytes())?;
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        crate::fsutil::write_atomic(&fleet_path, self.fleet.as_bytes())
    }
}

/// Where each `--template`/`--snippets` argument's conversion goes under
/// `base`, and the fleet entry naming it: a file goes to `base/<name>`; a
/// directory's files to `base/` when it is the only directory, else to
/// `base/<directory name>/`.
fn place(
    args: &[PathBuf],
    base: &Path,
    role: Role,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<(Vec<Job>, Vec<PathBuf>, Vec<PathBuf>)> {
    let dirs = args.iter().filter(|a| absolute(a).is_dir()).count();
    let mut jobs = Vec::new();
    let mut entries = Vec::new();
    let mut hidden = Vec::new();
    for arg in args {
        let input = absolute(arg);
        let target = if input.is_dir() {
            if dirs == 1 {
                base.to_path_buf()
            } else {
                base.join(input.file_name().unwrap_or(input.as_os_str()))
            }
        } else {
            base.to_path_buf()
        };
        let (mut planned, skipped) = super::plan(std::slice::from_ref(&input), &target, role)?;
        hidden.extend(skipped);
        entries.push(if input.is_dir() {
            target
        } else {
            planned
                .first()
                .map(|j| j.output.clone())
                .unwrap_or_else(|| target.clone())
        });
        jobs.append(&mut planned);
    }
    let mut seen = std::collections::BTreeMap::new();
    for job in &jobs {
        if let Some(first) = seen.insert(job.output.clone(), job.input.clone()) {
            return Err(usage(format!(
                "{} and {} would both be converted to {}: kopsci migrate cannot place them; convert them with `kopsci migrate template` into separate directories",
                first.display(),
                job.input.display(),
                job.output.display()
            )));
        }
    }
    Ok((jobs, entries, hidden))
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to `base` (both absolute and normalized), with `/`.
fn relative(path: &Path, base: &Path) -> String {
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..base.len() {
        parts.push("..".to_string());
    }
    for c in &path[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// A string as a YAML scalar (quoted when YAML would read it otherwise).
fn yaml_scalar(s: &str) -> Result<String> {
    let text = crate::yaml::to_string(&Value::String(s.to_string()))?;
    Ok(text.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_command_line(line).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            words("kops toolbox template \\\n  --values 'a b.yaml' --set \"x=1,y=\\\"2\\\"\""),
            [
                "kops",
                "toolbox",
                "template",
                "--values",
                "a b.yaml",
                "--set",
                "x=1,y=\"2\""
            ]
        );
        assert!(split_command_line("kops --name $(NAME)").is_err());
        assert!(split_command_line("kops toolbox template > out.yaml").is_err());
    }

    #[test]
    fn parses_kops_flags() {
        let cmd = parse_kops_command(&words(
            "KOPS_CLUSTER_NAME=env.example.com /usr/local/bin/kops toolbox template --values a.yaml,b.yaml --values=c.yaml --set a=1,b=2 --set-string c=true --template t/ --snippets s --output out.yaml --format-yaml --fail-on-missing=false -v 2",
        ))
        .unwrap();
        assert_eq!(
            cmd.values,
            [
                PathBuf::from("a.yaml"),
                PathBuf::from("b.yaml"),
                PathBuf::from("c.yaml")
            ]
        );
        assert_eq!(cmd.set, ["a=1,b=2"]);
        assert_eq!(cmd.set_string, ["c=true"]);
        assert_eq!(cmd.templates, [PathBuf::from("t/")]);
        assert_eq!(cmd.out, Some(PathBuf::from("out.yaml")));
        assert!(cmd.format_yaml);
        assert!(!cmd.fail_on_missing);
        assert_eq!(cmd.name.as_deref(), Some("env.example.com"));
        assert_eq!(cmd.ignored, ["-v 2"]);

        let cmd = parse_kops_command(&words(
            "kops --name a.example.com toolbox template a.example.com --template t",
        ))
        .unwrap();
        assert_eq!(cmd.name.as_deref(), Some("a.example.com"));
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let err = |line: &str| parse_kops_command(&words(line)).unwrap_err().to_string();
        assert!(
            err("kops toolbox template --template t --valuez x")
                .contains("unknown flag `--valuez`")
        );
        assert!(
            err("kops toolbox template --template t --config-value x").contains("--config-value")
        );
        assert!(err("kops get clusters").contains("expected `kops toolbox template"));
        assert!(err("kubectl apply").contains("expected a kops command line"));
        assert!(err("kops toolbox template --values v.yaml").contains("no --template"));
        assert!(
            err("kops toolbox template --template t --name a b")
                .contains("names the cluster twice")
        );
        assert!(
            err("kops toolbox template --template t --format-yaml=maybe").contains("invalid value")
        );
        assert!(err("kops toolbox template --template").contains("flag needs an argument"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/c.yaml"), Path::new("/a/d")),
            "../b/c.yaml"
        );
        assert_eq!(relative(Path::new("/a/d/t"), Path::new("/a/d")), "t");
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
