//! Template values: loading `--values` files and directories and
//! `terraform output -json` files, Helm-style `--set` / `--set-string`
//! expressions, the deep merge that layers them, explaining which layer gave
//! a key its value, and keeping sensitive Terraform outputs from ever being
//! printed.
//!
//! kOps reads values with sigs.k8s.io/yaml (YAML turned into JSON), so the
//! model is JSON: string keys, [`serde_json::Value`] values, maps in
//! insertion order.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// One value: what a values file or a `--set` expression holds.
pub type Value = serde_json::Value;
/// A mapping of values, in insertion order.
pub type Map = serde_json::Map<String, Value>;

/// Helm's `strvals.MaxIndex`: a list index above this is refused, so that
/// `a[99999999]=x` cannot allocate gigabytes.
pub const MAX_INDEX: usize = 65536;

/// Helm's `strvals.MaxNestedNameLevel`: at most this many dots in a key.
const MAX_NESTED_NAME_LEVEL: usize = 30;

/// Helm caps dots but not `[i]` nesting; we cap the whole path too, because
/// every later walk over the value (merge, drop, YAML output) recurses.
const MAX_PATH_SEGMENTS: usize = 128;

/// One source of values, in the order it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Where the values came from: a file path as displayed, or
    /// `--set EXPR` / `--set-string EXPR`.
    pub origin: String,
    /// The values this layer merges over the layers before it.
    pub values: Map,
}

// ---------------------------------------------------------------------------
// Merging

/// Deep-merges `layer` into `base`, as kOps' `mergeMaps` does: where both
/// sides hold a map the two are merged key by key; anything else in `layer`
/// (a scalar, a list, `null`, or a map over a non-map) replaces what `base`
/// had. Lists are never merged element-wise. Keys already in `base` keep
/// their position; new keys are appended in `layer`'s order.
pub fn merge(base: &mut Map, layer: Map) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Merges all layers in order, lowest first. Merging is not associative when
/// a layer turns a map into a scalar and a later one back into a map, so the
/// fold is always left to right.
pub fn merge_layers(layers: &[Layer]) -> Map {
    let mut merged = Map::new();
    for layer in layers {
        merge(&mut merged, layer.values.clone());
    }
    merged
}

// ---------------------------------------------------------------------------
// Loading files

/// Expands `--values` arguments into files: a file is kept as given; a
/// directory is walked recursively in lexical order (as kOps'
/// `filepath.Walk` does), keeping files only and skipping hidden entries
/// (names starting with `.`), so editor swap files and `.git` never become
/// values. Symbolic links are followed.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            // The root is never filtered: `.` or `./.values` given explicitly
            // is meant to be read.
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walker {
            let entry = entry.map_err(|e| {
                let at = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| path.clone());
                Error::io(at, io::Error::from(e))
            })?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Reads one values file. An empty file (or one holding only comments) is an
/// empty map; a top level that is not a mapping is an error, because kOps
/// would fail on it too and a list of values has no names to template with.
pub fn load_values_file(path: &Path) -> Result<Map> {
    let origin = path.display().to_string();
    let src = crate::fsutil::read_to_string(path)?;
    match crate::yaml::from_str::<Value>(&src, &origin)? {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(Error::Values {
            origin,
            message: format!(
                "expected a mapping at the top level, found {}",
                kind_of(&other)
            ),
        }),
    }
}

/// Loads every values file named by `paths` (directories expanded as in
/// [`expand_paths`]), one layer per file, in order.
pub fn load_layers(paths: &[PathBuf]) -> Result<Vec<Layer>> {
    expand_paths(paths)?
        .into_iter()
        .map(|path| {
            Ok(Layer {
                origin: path.display().to_string(),
                values: load_values_file(&path)?,
            })
        })
        .collect()
}

/// Where a values layer comes from, for callers that mix kinds in one
/// ordered list (`kopsci render --values A --values-terraform B --values C`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML (or JSON) values file, or a directory of them, as `--values`.
    File(PathBuf),
    /// The JSON `terraform output -json` prints, as `--values-terraform`.
    TerraformOutput(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::File(path) | Source::TerraformOutput(path) => path,
        }
    }
}

/// Loads `sources` in order, one layer per file (directories expanded as in
/// [`expand_paths`]), and the keys that must never be printed.
pub fn load_sources(sources: &[Source]) -> Result<(Vec<Layer>, Sensitive)> {
    let mut layers = Vec::new();
    let mut sensitive = Sensitive::default();
    for source in sources {
        match source {
            Source::File(path) => layers.extend(load_layers(std::slice::from_ref(path))?),
            Source::TerraformOutput(path) => {
                let outputs = read_terraform_output(path)?;
                sensitive.extend(&outputs.sensitive);
                layers.push(outputs.layer);
            }
        }
    }
    Ok((layers, sensitive))
}

// ---------------------------------------------------------------------------
// Terraform outputs

/// Top-level keys whose values must never be printed: the outputs a
/// `terraform output -json` file marks `"sensitive": true`.
///
/// The rule is by key, whichever layer gives the value: once any Terraform
/// layer marks `db_password` sensitive, `db_password` (and everything under
/// it, `db_password.x`) is shown as `(sensitive)` by `--explain`, refused by
/// `--config-value` and kept out of every error, even where a later plain
/// values file overrides it. Template errors never print values anyway;
/// rendered manifests do hold them, which is their purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sensitive {
    keys: BTreeSet<String>,
}

/// What `--explain` and every other display print instead of a sensitive
/// value.
pub const SENSITIVE_PLACEHOLDER: &str = "(sensitive)";

impl Sensitive {
    /// Marks the top-level key `key` sensitive.
    pub fn insert(&mut self, key: impl Into<String>) {
        self.keys.insert(key.into());
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &Sensitive) {
        self.keys.extend(other.keys.iter().cloned());
    }

    /// Whether nothing is sensitive.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The sensitive top-level keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// Whether the value at dotted key `dotted` (as in [`lookup`]) is, or is
    /// inside, a sensitive value.
    pub fn covers(&self, dotted: &str) -> bool {
        let head = dotted.split('.').next().unwrap_or_default();
        self.keys.contains(head)
    }

    /// Refuses to print the value at dotted `key` (`--config-value`) when it
    /// is sensitive: a CI log is no place for it.
    pub fn check_printable(&self, key: &str) -> Result<()> {
        if self.covers(key) {
            return Err(Error::Values {
                origin: "--config-value".to_string(),
                message: format!(
                    "`{key}` is a sensitive Terraform output; kopsci does not print it ({SENSITIVE_PLACEHOLDER})"
                ),
            });
        }
        Ok(())
    }

    /// Replaces every value of `explanation` with [`SENSITIVE_PLACEHOLDER`]
    /// (and marks the contributions) when its key is covered. A contribution
    /// that gives no value stays `None`, so which layers set the key still
    /// shows.
    pub fn redact(&self, explanation: &mut Explanation) {
        if !self.covers(&explanation.key) {
            return;
        }
        for contribution in &mut explanation.contributions {
            if contribution.value.is_some() {
                contribution.value = Some(Value::String(SENSITIVE_PLACEHOLDER.to_string()));
                contribution.sensitive = true;
            }
        }
    }

    /// An error of rendering with `values`, with every sensitive string in
    /// its message replaced by [`SENSITIVE_PLACEHOLDER`]: a template can put
    /// any value into an error (`sprig_fail(x)`, `required(x)`'s message,
    /// a YAML error), and render errors go to CI logs. Strings shorter than
    /// four characters are left alone (replacing them would garble the
    /// message and they hide nothing).
    pub fn scrub(&self, values: &Map, err: Error) -> Error {
        let mut secrets = Vec::new();
        for key in &self.keys {
            if let Some(value) = values.get(key) {
                collect_strings(value, &mut secrets);
            }
        }
        if secrets.is_empty() {
            return err;
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        scrub_error(err, &secrets)
    }
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) if s.chars().count() >= 4 => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                if k.chars().count() >= 4 {
                    out.push(k);
                }
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

fn scrub_error(err: Error, secrets: &[&str]) -> Error {
    let scrub = |text: String| {
        secrets.iter().fold(text, |text, secret| {
            text.replace(secret, SENSITIVE_PLACEHOLDER)
        })
    };
    match err {
        Error::Template { location, message } => Error::Template {
            location,
            message: scrub(message),
        },
        Error::RenderedYaml {
            template,
            index,
            line,
            column,
            message,
        } => Error::RenderedYaml {
            template,
            index,
            line,
            column,
            message: scrub(message),
        },
        Error::Cluster { cluster, cause } => Error::Cluster {
            cluster,
            cause: Box::new(scrub_error(*cause, secrets)),
        },
        other => other,
    }
}

/// A `terraform output -json` file read as a values layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TerraformOutput {
    /// The outputs, unwrapped: `{"x": {"value": V, …}}` becomes `x: V`, in
    /// the file's order. The origin is the file's path as displayed.
    pub layer: Layer,
    /// The outputs marked `"sensitive": true`.
    pub sensitive: Sensitive,
}

/// Loads a `terraform output -json` file as a values layer, as
/// [`read_terraform_output`] does, keeping only the layer.
///
/// This drops which outputs are sensitive: a caller that prints values
/// (`--explain`, `--config-value`, an error quoting a value) must use
/// [`read_terraform_output`] and its [`Sensitive`] set instead.
pub fn load_terraform_output(path: &Path) -> Result<Layer> {
    read_terraform_output(path).map(|outputs| outputs.layer)
}

/// Reads the JSON `terraform output -json` prints as a values layer: every
/// top-level `{"x": {"value": V, "type": T, "sensitive": S}}` becomes
/// `x: V`, so templates say `{{ vpc_id }}` rather than `{{ vpc_id.value }}`.
///
/// This is the one reader for Terraform outputs: `--values-terraform FILE`
/// in `kopsci render`, and a fleet file's `{terraform_output: FILE}` values
/// entry, which should call this and
///
/// - push `layer` where the entry stands among the other layers (its
///   `origin` is the path, for `--explain` and errors);
/// - merge `sensitive` into the cluster's [`Sensitive`] set and pass it to
///   [`Sensitive::redact`] before printing an explanation, check it before
///   printing a value anywhere else (`--config-value`, a layer check that
///   quotes a value such as a conflicting `clusterName`), and print
///   [`SENSITIVE_PLACEHOLDER`] instead;
/// - count the file as an input of the cluster, like a values file, for
///   affected-cluster detection and the plan fingerprint.
///
/// The file is parsed as values files are (JSON is YAML; duplicate keys are
/// errors). A file of another shape is refused with its `file:line:column`
/// and no value in the message: a top level that is not a mapping, or an
/// output that is not a mapping with `value`, `type` and a boolean
/// `sensitive` (which is what `terraform output -json NAME`, printing one
/// bare value, or a plain values file would give). Other keys of an output
/// are ignored, should Terraform add some. An empty file is refused too;
/// Terraform prints `{}` when there are no outputs.
pub fn read_terraform_output(path: &Path) -> Result<TerraformOutput> {
    use serde_saphyr::Spanned;

    let origin = path.display().to_string();
    let src = crate::fsutil::read_to_string(path)?;
    let shape_error = |line: u64, column: u64, message: String| Error::Yaml {
        origin: origin.clone(),
        line,
        column,
        message,
    };
    // The top level first, as any value: a typed read would quote a scalar
    // in its error.
    let top: Spanned<Value> = crate::yaml::from_str(&src, &origin)?;
    if !top.value.is_object() {
        let found = if top.value.is_null() {
            "nothing"
        } else {
            kind_of(&top.value)
        };
        return Err(shape_error(
            top.referenced.line().max(1),
            top.referenced.column().max(1),
            format!(
                "not the output of `terraform output -json`: expected a mapping of outputs at the top level, found {found}"
            ),
        ));
    }
    let outputs: indexmap::IndexMap<String, Spanned<Value>> = crate::yaml::from_str(&src, &origin)?;
    let mut values = Map::new();
    let mut sensitive = Sensitive::default();
    for (name, output) in outputs {
        let at = &output.referenced;
        let Value::Object(mut fields) = output.value else {
            return Err(shape_error(
                at.line(),
                at.column(),
                format!(
                    "output `{name}` is {}, not the mapping of `value`, `type` and `sensitive` that `terraform output -json` prints (`terraform output -json NAME` prints a bare value: give the file of all outputs)",
                    kind_of(&output.value)
                ),
            ));
        };
        let missing: Vec<&str> = ["value", "type", "sensitive"]
            .into_iter()
            .filter(|k| !fields.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(shape_error(
                at.line(),
                at.column(),
                format!(
                    "output `{name}` has no `{}`: not what `terraform output -json` prints (`terraform output -json NAME` prints a bare value: give the file of all outputs)",
                    missing.join("`, `")
                ),
            ));
        }
        match fields.get("sensitive") {
            Some(Value::Bool(true)) => sensitive.insert(name.clone()),
            Some(Value::Bool(false)) => {}
            _ => {
                return Err(shape_error(
                    at.line(),
                    at.column(),
                    format!("output `{name}`: `sensitive` must be true or false"),
                ));
            }
        }
        let value = fields.remove("value").unwrap_or(Value::Null);
        values.insert(name, value);
    }
    Ok(TerraformOutput {
        layer: Layer { origin, values },
        sensitive,
    })
}

/// Names a value's type for messages, without its content (values may be
/// secrets).
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// ---------------------------------------------------------------------------
// --set / --set-string (Helm strvals)

/// One step of a `--set` key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// One `path=value` of a `--set` expression.
#[derive(Debug, Clone, PartialEq)]
struct Assignment {
    path: Vec<Seg>,
    value: Value,
}

fn flag_name(typed: bool) -> &'static str {
    if typed { "--set" } else { "--set-string" }
}

/// Applies one `--set` (`typed`) or `--set-string` (`!typed`) expression to
/// `into`, as kOps does with Helm's `strvals.ParseInto` /
/// `ParseIntoString`:
///
/// - `a=1,b.c=x` sets `a` and the nested `b.c`; `\` escapes the next
///   character (`a\.b=c` sets the key `a.b`, `a=x\,y` the value `x,y`);
/// - `a={1,2,3}` sets a list; `a[3]=x` sets one element, growing the list
///   with `null`s; `a[0].b=c` and `a[1][2]=x` nest;
/// - `a=` sets the empty string;
/// - with `--set`, `true`/`false`/`null` in any case become booleans/null,
///   and integers without a leading zero (`0`, `42`, `-5`) become numbers;
///   everything else, `1.0` and `0755` included, stays a string. With
///   `--set-string` every value is a string.
///
/// A path through an existing non-map value replaces it with a map (or a
/// list, for an index), as `--set` overrides whatever the files hold. Helm
/// does this inside lists only; elsewhere it fails with a type error, even
/// over the `null` an empty `a:` in a values file gives. The expression is
/// parsed completely before anything is applied, so on error `into` is
/// unchanged.
///
/// Stricter than Helm, which silently ignores some of these: an empty key
/// (`=1`, `a..b=1`, `a,,b=1`), a key without `=` (`a`, `a[0]`), and a key
/// set to a value and then used as a map in the same expression (`a=1,a.b=2`,
/// where Helm fails with a type error) are errors.
pub fn apply_set(expr: &str, typed: bool, into: &mut Map) -> Result<()> {
    for assignment in parse_set(expr, typed)? {
        assign(into, &assignment.path, assignment.value);
    }
    Ok(())
}

/// Builds the layer for one `--set`/`--set-string` expression applied over
/// `base` (the merge of every earlier layer), such that
/// `merge(base, layer.values)` is exactly what [`apply_set`] makes of
/// `base`. A plain `--set` map cannot be merged instead: `a[1]=x` edits the
/// list `base` already has, while a merge would replace it. So the layer
/// holds whole lists wherever the expression indexes one, and only the keys
/// the expression sets elsewhere.
pub fn set_layer(expr: &str, typed: bool, base: &Map) -> Result<Layer> {
    let assignments = parse_set(expr, typed)?;
    let mut values = Map::new();
    for assignment in &assignments {
        seed_lists(&mut values, base, &assignment.path);
    }
    for assignment in assignments {
        assign(&mut values, &assignment.path, assignment.value);
    }
    Ok(Layer {
        origin: format!("{} {expr}", flag_name(typed)),
        values,
    })
}

/// Appends the layer for one `--set`/`--set-string` expression to `layers`
/// (see [`set_layer`]). kOps applies every `--set` before any
/// `--set-string`, so callers push them in that order.
pub fn push_set_layer(layers: &mut Vec<Layer>, expr: &str, typed: bool) -> Result<()> {
    let base = merge_layers(layers);
    let layer = set_layer(expr, typed, &base)?;
    layers.push(layer);
    Ok(())
}

/// Copies into `seed` the list of `base` that `path` indexes first, with the
/// maps leading to it (empty but for what other paths seeded), so that
/// applying the path to `seed` edits the same list it would in `base`.
fn seed_lists(seed: &mut Map, base: &Map, path: &[Seg]) {
    let Some(first_index) = path.iter().position(|s| matches!(s, Seg::Index(_))) else {
        return;
    };
    let keys: Vec<&str> = path[..first_index]
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let Some((list_key, parents)) = keys.split_last() else {
        return;
    };
    let mut from = base;
    let mut to = seed;
    for key in parents {
        let Some(Value::Object(next_from)) = from.get(*key) else {
            return;
        };
        from = next_from;
        let slot = to
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(next_to) = slot else {
            return;
        };
        to = next_to;
    }
    if let Some(list @ Value::Array(_)) = from.get(*list_key) {
        to.entry(list_key.to_string())
            .or_insert_with(|| list.clone());
    }
}

/// Sets `value` at `path` (which starts with a key), replacing non-maps and
/// non-lists met on the way, as Helm does inside lists.
fn assign(root: &mut Map, path: &[Seg], value: Value) {
    let Some((Seg::Key(first), rest)) = path.split_first() else {
        return;
    };
    let mut slot = root.entry(first.clone()).or_insert(Value::Null);
    for seg in rest {
        slot = match seg {
            Seg::Key(key) => {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                match slot {
                    Value::Object(map) => map.entry(key.clone()).or_insert(Value::Null),
                    _ => return,
                }
            }
            Seg::Index(index) => {
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                match slot {
                    Value::Array(list) => {
                        if list.len() <= *index {
                            list.resize(*index + 1, Value::Null);
                        }
                        &mut list[*index]
                    }
                    _ => return,
                }
            }
        };
    }
    *slot = value;
}

/// A character source with one character of push-back, like Go's
/// `bytes.Buffer` `UnreadRune` that Helm's parser relies on.
struct Scanner<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Scanner<'_> {
    /// Reads up to (and consumes) the first unescaped character of `stop`,
    /// returning the text before it with escapes resolved and the stop
    /// character, or `None` at the end of input. A `\` at the very end is
    /// dropped, as Helm does.
    fn until(&mut self, stop: &[char]) -> (String, Option<char>) {
        let mut text = String::new();
        while let Some(c) = self.chars.next() {
            if stop.contains(&c) {
                return (text, Some(c));
            }
            if c == '\\' {
                match self.chars.next() {
                    Some(escaped) => text.push(escaped),
                    None => return (text, None),
                }
            } else {
                text.push(c);
            }
        }
        (text, None)
    }
}

/// A parse failure; the caller adds the flag and expression.
type ParseResult<T> = std::result::Result<T, String>;

/// Parses a whole expression into assignments, following the grammar of
/// Helm's `strvals` parser (`key` / `listItem` / `valList` / `val`) without
/// its recursion.
fn parse_set(expr: &str, typed: bool) -> Result<Vec<Assignment>> {
    parse_assignments(expr, typed).map_err(|message| Error::SetValue {
        flag: flag_name(typed),
        expr: redact_set_values(expr),
        message,
    })
}

/// The expression with every value replaced by `…`: `--set` often carries
/// tokens and passwords, and errors end up in CI logs. Keys stay, so the
/// user can still find the bad assignment.
pub fn redact_set_values(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut in_value = false;
    let mut depth = 0usize;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next();
            if !in_value {
                out.push(c);
                out.extend(next);
            }
            continue;
        }
        if in_value {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    in_value = false;
                    out.push(c);
                }
                _ => {}
            }
            continue;
        }
        out.push(c);
        if c == '=' {
            in_value = true;
            depth = 0;
            out.push('…');
        }
    }
    out
}

fn parse_assignments(expr: &str, typed: bool) -> ParseResult<Vec<Assignment>> {
    let mut sc = Scanner {
        chars: expr.chars().peekable(),
    };
    let mut out: Vec<Assignment> = Vec::new();
    loop {
        let Some(path) = parse_path(&mut sc)? else {
            return Ok(out);
        };
        check_not_through_earlier_value(&out, &path)?;
        let value = parse_value(&mut sc, typed, &path)?;
        out.push(Assignment { path, value });
    }
}

/// Reads a key path up to and including its `=`. `None` at a clean end of
/// input (nothing left, or only a trailing `,` consumed earlier).
fn parse_path(sc: &mut Scanner<'_>) -> ParseResult<Option<Vec<Seg>>> {
    let mut path: Vec<Seg> = Vec::new();
    let mut dots = 0usize;
    // Helm's `key` state: read a name, then see what follows it.
    loop {
        let (name, last) = sc.until(&['=', '[', ',', '.']);
        if last.is_none() && name.is_empty() && path.is_empty() {
            return Ok(None);
        }
        if name.is_empty() {
            return Err(match display_path(&path) {
                p if p.is_empty() => "empty key".to_string(),
                p => format!("empty key after `{p}`"),
            });
        }
        path.push(Seg::Key(name));
        check_depth(&path)?;
        match last {
            Some('=') => return Ok(Some(path)),
            Some('.') => {
                dots += 1;
                if dots > MAX_NESTED_NAME_LEVEL {
                    return Err(format!(
                        "key nests more than {MAX_NESTED_NAME_LEVEL} levels deep"
                    ));
                }
                continue;
            }
            Some('[') => {}
            // `,` or end of input straight after a name.
            _ => return Err(format!("key `{}` has no value", display_path(&path))),
        }
        // Helm's `listItem` state: one or more `[i]`, then `=`, `.` or `[`.
        loop {
            let index = parse_index(sc, &path)?;
            path.push(Seg::Index(index));
            check_depth(&path)?;
            let (junk, last) = sc.until(&['[', '.', '=']);
            if !junk.is_empty() {
                return Err(format!(
                    "unexpected text after index in key `{}`",
                    display_path(&path)
                ));
            }
            match last {
                Some('=') => return Ok(Some(path)),
                Some('[') => continue,
                Some('.') => break,
                _ => return Err(format!("key `{}` has no value", display_path(&path))),
            }
        }
    }
}

fn check_depth(path: &[Seg]) -> ParseResult<()> {
    if path.len() > MAX_PATH_SEGMENTS {
        return Err(format!(
            "key nests more than {MAX_PATH_SEGMENTS} levels deep"
        ));
    }
    Ok(())
}

/// Reads `i]` after a `[`, accepting what Go's `strconv.Atoi` accepts.
fn parse_index(sc: &mut Scanner<'_>, path: &[Seg]) -> ParseResult<usize> {
    let (text, last) = sc.until(&[']']);
    let key = display_path(path);
    if last.is_none() {
        return Err(format!("unterminated `[` in key `{key}`"));
    }
    let index: i64 = text
        .parse()
        .map_err(|_| format!("invalid index `[{text}]` in key `{key}`"))?;
    if index < 0 {
        return Err(format!("negative index `[{text}]` in key `{key}`"));
    }
    match usize::try_from(index) {
        Ok(i) if i <= MAX_INDEX => Ok(i),
        _ => Err(format!(
            "index `[{text}]` in key `{key}` is greater than the maximum {MAX_INDEX}"
        )),
    }
}

/// Reads the value after `=`: `{a,b}` is a list, anything else a scalar up
/// to the next unescaped `,`.
fn parse_value(sc: &mut Scanner<'_>, typed: bool, path: &[Seg]) -> ParseResult<Value> {
    if sc.chars.peek() != Some(&'{') {
        let (text, _) = sc.until(&[',']);
        return Ok(scalar(text, typed));
    }
    sc.chars.next();
    let mut list = Vec::new();
    loop {
        let (text, last) = sc.until(&[',', '}']);
        match last {
            Some(',') => list.push(scalar(text, typed)),
            Some(_) => {
                list.push(scalar(text, typed));
                // Helm consumes one `,` after `}` and leaves anything else
                // to start the next key.
                if sc.chars.peek() == Some(&',') {
                    sc.chars.next();
                }
                return Ok(Value::Array(list));
            }
            None => {
                return Err(format!(
                    "list value of key `{}` must end with `}}`",
                    display_path(path)
                ));
            }
        }
    }
}

/// Helm's `typedVal`.
fn scalar(text: String, typed: bool) -> Value {
    if !typed {
        return Value::String(text);
    }
    if text.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if text.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if text == "0" {
        return Value::from(0i64);
    }
    // Like Go's strconv.ParseInt(s, 10, 64): optional sign, ASCII digits.
    // A leading zero keeps `0755` a string (it is not decimal 755).
    if !text.is_empty()
        && !text.starts_with('0')
        && let Ok(n) = text.parse::<i64>()
    {
        return Value::from(n);
    }
    Value::String(text)
}

/// Refuses `a=1,a.b=2` and `a[0]=1,a.b=2`: every assignment leaves the
/// node its leading keys name holding a non-map (the value, or a list), and
/// Helm fails when a later key goes through it as a map. Allowing it would
/// also drop keys `a` had before the expression, which no merge layer could
/// express.
fn check_not_through_earlier_value(earlier: &[Assignment], path: &[Seg]) -> ParseResult<()> {
    let keys = key_prefix(path);
    for prev in earlier {
        let prev_keys = key_prefix(&prev.path);
        if prev_keys.len() < keys.len() && keys.starts_with(prev_keys) {
            return Err(format!(
                "key `{}` is set to a value and then used as a map in `{}`",
                display_path(prev_keys),
                display_path(path)
            ));
        }
    }
    Ok(())
}

/// The leading run of keys of a path (up to its first index).
fn key_prefix(path: &[Seg]) -> &[Seg] {
    let end = path
        .iter()
        .position(|s| matches!(s, Seg::Index(_)))
        .unwrap_or(path.len());
    &path[..end]
}

/// Writes a path back in `--set` syntax, for messages.
fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Lookup and explain

/// Finds the value at a dotted path: segments name map keys, and a numeric
/// segment indexes a list (`subnets.0.name`). Keys containing dots cannot
/// be reached this way.
pub fn lookup<'a>(root: &'a Map, dotted: &str) -> Option<&'a Value> {
    let mut segs = dotted.split('.');
    let mut at = root.get(segs.next()?)?;
    for seg in segs {
        at = match at {
            Value::Object(map) => map.get(seg)?,
            Value::Array(list) => list.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// What one layer gives at the explained key.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The layer's origin.
    pub origin: String,
    /// The value the layer holds at the key, if any; after
    /// [`Sensitive::redact`], [`SENSITIVE_PLACEHOLDER`] for a sensitive key.
    pub value: Option<Value>,
    /// Whether `value` was replaced because the key is sensitive.
    pub sensitive: bool,
}

/// Which layers give a key a value, and which of them wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The dotted key explained.
    pub key: String,
    /// One entry per layer, in layer order.
    pub contributions: Vec<Contribution>,
    /// Index into `contributions` of the layer whose value is in effect.
    pub winner: Option<usize>,
}

/// Explains a dotted key (as in [`lookup`]) across `layers`.
///
/// The winner follows the merge: it is the last layer that gives the key a
/// value. For a non-map value that value is the merged one; for a map the
/// merged map also holds keys from earlier layers, and the winner is the
/// last layer that touches it. A layer that replaces a parent of the key
/// (say `a: x` or `a: [..]` over `a: {b: 1}` when explaining `a.b`, or a
/// map over a list) discards what earlier layers gave; if it gives no value
/// at the key itself, there is no winner until a later layer gives one.
/// `winner` is `None` exactly when the merged values have nothing at the
/// key.
pub fn explain(layers: &[Layer], dotted: &str) -> Explanation {
    let mut contributions = Vec::with_capacity(layers.len());
    let mut winner = None;
    // Replaying the merge is the only sure way to see what each layer
    // discards; values files are small.
    let mut merged = Map::new();
    for (i, layer) in layers.iter().enumerate() {
        let value = lookup(&layer.values, dotted).cloned();
        merge(&mut merged, layer.values.clone());
        if lookup(&merged, dotted).is_none() {
            winner = None;
        } else if value.is_some() {
            winner = Some(i);
        }
        contributions.push(Contribution {
            origin: layer.origin.clone(),
            value,
            sensitive: false,
        });
    }
    Explanation {
        key: dotted.to_string(),
        contributions,
        winner,
    }
}

// ---------------------------------------------------------------------------
// Display

/// Formats a value for `--config-value`: scalars bare (a string without
/// quotes, `null` as `null`), maps and lists as YAML without the final
/// newline.
pub fn to_display_yaml(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => {
            let text = crate::yaml::to_string(v)?;
            match text.strip_suffix('\n') {
                Some(t) => t.to_string(),
                None => text,
            }
        }
    })
}

/// `(a ⊕ b) ⊕ c` and `a ⊕ (b ⊕ c)`, for the tests of when `merge` is
/// associative.
#[cfg(test)]
fn merge_both_ways(a: Map, b: Map, c: Map) -> (Map, Map) {
    let mut left = a.clone();
    merge(&mut left, b.clone());
    merge(&mut left, c.clone());
    let mut bc = b;
    merge(&mut bc, c);
    let mut right = a;
    merge(&mut right, bc);
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map {
        match v {
            Value::Object(m) => m,
            other => panic!("not a map: {other}"),
        }
    }

    /// Order-sensitive comparison: `Map`'s `==` ignores key order.
    fn ser(m: &Map) -> String {
        serde_json::to_string(m).unwrap()
    }

    fn set(expr: &str) -> Map {
        let mut m = Map::new();
        apply_set(expr, true, &mut m).unwrap();
        m
    }

    #[test]
    fn set_errors_never_show_values() {
        assert_eq!(
            redact_set_values("a.b=secret,c={1,2},d\\,e=x\\,y"),
            "a.b=…,c=…,d\\,e=…"
        );
        assert_eq!(redact_set_values("novalue"), "novalue");
        let err = set_err("token=hunter2,b[x]=1", true);
        assert!(!err.contains("hunter2"), "{err}");
        let mut m = Map::new();
        let shown = apply_set("token=hunter2,b[x]=1", true, &mut m)
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("token=…"), "{shown}");
    }

    fn set_string(expr: &str) -> Map {
        let mut m = Map::new();
        apply_set(expr, false, &mut m).unwrap();
        m
    }

    fn set_err(expr: &str, typed: bool) -> String {
        let mut m = Map::new();
        match apply_set(expr, typed, &mut m) {
            Err(Error::SetValue {
                flag,
                expr: e,
                message,
            }) => {
                assert_eq!(flag, if typed { "--set" } else { "--set-string" });
                assert_eq!(e, redact_set_values(expr));
                assert!(m.is_empty(), "{expr}: partially applied: {m:?}");
                message
            }
            other => panic!("{expr}: expected a set error, got {other:?}"),
        }
    }

    // --- merge ---------------------------------------------------------

    #[test]
    fn merge_deep_merges_maps_as_in_the_kops_docs() {
        let mut a =
            map(json!({"instanceGroups": {"foo": {"ami": "ami-1234567", "type": "m4.large"}}}));
        merge(
            &mut a,
            map(json!({"instanceGroups": {"foo": {"type": "t2.large"}}})),
        );
        assert_eq!(
            ser(&a),
            ser(&map(
                json!({"instanceGroups": {"foo": {"ami": "ami-1234567", "type": "t2.large"}}})
            ))
        );
    }

    #[test]
    fn merge_replaces_lists_scalars_and_null_wholesale() {
        let mut a = map(json!({"l": [1, 2, 3], "s": "x", "m": {"k": 1}, "n": {"k": 1}, "t": 1}));
        merge(
            &mut a,
            map(json!({"l": [9], "s": {"now": "map"}, "m": null, "n": [1], "t": "one"})),
        );
        assert_eq!(
            ser(&a),
            ser(&map(
                json!({"l": [9], "s": {"now": "map"}, "m": null, "n": [1], "t": "one"})
            ))
        );
    }

    #[test]
    fn merge_keeps_existing_positions_and_appends_new_keys() {
        let mut a = map(json!({"z": 1, "a": {"y": 1, "b": 1}}));
        merge(
            &mut a,
            map(json!({"new": 1, "a": {"c": 2, "y": 3}, "z": 2})),
        );
        assert_eq!(ser(&a), r#"{"z":2,"a":{"y":3,"b":1,"c":2},"new":1}"#);
    }

    #[test]
    fn merge_is_not_associative_when_a_layer_changes_a_type() {
        // Why merge_layers folds left to right: a scalar in the middle
        // layer discards the first layer's map only when applied in order.
        let a = map(json!({"k": {"x": 1}}));
        let b = map(json!({"k": "scalar"}));
        let c = map(json!({"k": {"y": 2}}));
        let (left, right) = merge_both_ways(a, b, c);
        assert_eq!(left, map(json!({"k": {"y": 2}})));
        assert_eq!(right, map(json!({"k": {"x": 1, "y": 2}})));
    }

    #[test]
    fn merge_layers_folds_in_order() {
        let layers = vec![
            Layer {
                origin: "1".into(),
                values: map(json!({"a": 1, "m": {"x": 1}})),
            },
            Layer {
                origin: "2".into(),
                values: map(json!({"a": 2, "m": {"y": 2}})),
            },
            Layer {
                origin: "3".into(),
                values: map(json!({"m": {"x": 3}})),
            },
        ];
        assert_eq!(ser(&merge_layers(&layers)), r#"{"a":2,"m":{"x":3,"y":2}}"#);
        assert!(merge_layers(&[]).is_empty());
    }

    // --- loading -------------------------------------------------------

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    /// Loads `text` as a values file.
    fn load_text(text: &str) -> Map {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.yaml");
        write(&path, text);
        load_values_file(&path).unwrap()
    }

    #[test]
    fn expand_paths_walks_directories_lexically_and_skips_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("values");
        for name in [
            "b.yaml",
            "a.yaml",
            ".hidden.yaml",
            ".git/config",
            "sub/c.yaml",
            "sub/.c.yaml.swp",
            "B.yaml",
        ] {
            write(&root.join(name), "x: 1\n");
        }
        std::fs::create_dir_all(root.join("zz-empty")).unwrap();
        let single = dir.path().join("single.yaml");
        write(&single, "y: 1\n");

        let files = expand_paths(&[single.clone(), root.clone()]).unwrap();
        let expected: Vec<PathBuf> = vec![
            single,
            root.join("B.yaml"),
            root.join("a.yaml"),
            root.join("b.yaml"),
            root.join("sub/c.yaml"),
        ];
        assert_eq!(files, expected);
    }

    #[test]
    fn expand_paths_reads_an_explicitly_named_hidden_directory_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let hidden = dir.path().join(".values");
        write(&hidden.join("a.yaml"), "x: 1\n");
        write(&dir.path().join(".env.yaml"), "x: 1\n");
        assert_eq!(
            expand_paths(std::slice::from_ref(&hidden)).unwrap(),
            vec![hidden.join("a.yaml")]
        );
        let file = dir.path().join(".env.yaml");
        assert_eq!(
            expand_paths(std::slice::from_ref(&file)).unwrap(),
            vec![file]
        );
    }

    #[test]
    fn expand_paths_names_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        match expand_paths(std::slice::from_ref(&missing)) {
            Err(err @ Error::Io { .. }) => {
                let Error::Io { path, .. } = &err else {
                    unreachable!()
                };
                assert_eq!(path, &missing);
                assert!(err.to_string().starts_with(&missing.display().to_string()));
            }
            other => panic!("expected an io error, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_maps() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("empty.yaml", ""),
            ("comments.yaml", "# nothing here\n\n# really\n"),
            ("null.yaml", "~\n"),
        ] {
            let path = dir.path().join(name);
            write(&path, text);
            assert!(load_values_file(&path).unwrap().is_empty(), "{name}");
        }
    }

    #[test]
    fn a_top_level_that_is_not_a_mapping_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (text, found) in [
            ("- a\n- b\n", "a list"),
            ("just text\n", "a string"),
            ("42\n", "a number"),
            ("true\n", "a boolean"),
        ] {
            let path = dir.path().join("v.yaml");
            write(&path, text);
            let err = load_values_file(&path).unwrap_err();
            assert!(matches!(err, Error::Values { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: expected a mapping at the top level, found {found}",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn values_files_are_read_as_yaml_1_1_like_kops() {
        // kOps reads values with a YAML 1.1 parser: `0755` is octal 493 and
        // `yes`/`on` are booleans. Quote them to keep strings.
        let v = load_text(
            "mode: 0755\nquoted: \"0755\"\nenabled: yes\nswitch: on\nplain: 1.0\nhex: 0x1F\n",
        );
        assert_eq!(v["mode"], json!(493));
        assert_eq!(v["quoted"], json!("0755"));
        assert_eq!(v["enabled"], json!(true));
        assert_eq!(v["switch"], json!(true));
        assert_eq!(v["plain"], json!(1.0));
        assert_eq!(v["hex"], json!(31));
    }

    /// Every example docs/fleet-file.md gives under "How values files are
    /// read".
    #[test]
    fn the_yaml_1_1_examples_in_the_fleet_file_docs_hold() {
        let v = load_text(
            "a: on\nb: yes\nc: y\nd: Yes\ne: ON\nj: YES\nk: On\nf: off\ng: no\nh: n\ni: NO\nl: Off\n\
             octal: 017\nmode: 0755\nhex: 0x1F\nversion: 1.10\nk8s: 1.30\nunderscore: 1_000\n\
             tilde: ~\nq1: \"017\"\nq2: '1.10'\nq3: \"on\"\nq4: \"1.30\"\n",
        );
        for key in ["a", "b", "c", "d", "e", "j", "k"] {
            assert_eq!(v[key], json!(true), "{key}");
        }
        for key in ["f", "g", "h", "i", "l"] {
            assert_eq!(v[key], json!(false), "{key}");
        }
        assert_eq!(v["octal"], json!(15));
        assert_eq!(v["mode"], json!(493));
        assert_eq!(v["hex"], json!(31));
        assert_eq!(v["version"], json!(1.1));
        assert_eq!(v["k8s"], json!(1.3));
        assert_eq!(v["underscore"], json!(1000));
        assert_eq!(v["tilde"], json!(null));
        assert_eq!(v["q1"], json!("017"));
        assert_eq!(v["q2"], json!("1.10"));
        assert_eq!(v["q3"], json!("on"));
        assert_eq!(v["q4"], json!("1.30"));
        // `--set` types only true/false/null and plain integers.
        let m = set("a=017,b=on,c=1.10,d=yes,e=true,f=42");
        assert_eq!(
            ser(&m),
            r#"{"a":"017","b":"on","c":"1.10","d":"yes","e":true,"f":42}"#
        );
    }

    #[test]
    fn non_string_keys_become_strings_as_with_sigs_k8s_io_yaml() {
        let v = load_text("1: one\ntrue: yes\n");
        assert_eq!(ser(&v), r#"{"1":"one","true":true}"#);
    }

    #[test]
    fn a_duplicate_key_is_an_error_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.yaml");
        write(&path, "a: 1\nb:\n  c: 1\n  c: 2\n");
        match load_values_file(&path).unwrap_err() {
            Error::Yaml {
                origin,
                line,
                column,
                message,
            } => {
                assert_eq!(origin, path.display().to_string());
                assert_eq!((line, column), (4, 3));
                assert!(message.contains("duplicate"), "{message}");
            }
            other => panic!("expected a yaml error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_yaml_reports_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        write(&path, "a: 1\nb: [1, 2\n");
        let err = load_values_file(&path).unwrap_err();
        let text = err.to_string();
        let Error::Yaml { line, column, .. } = err else {
            panic!("expected a yaml error, got {err:?}");
        };
        assert!(line >= 2, "{text}");
        assert!(
            text.starts_with(&format!("{}:{line}:{column}: ", path.display())),
            "{text}"
        );
    }

    #[test]
    fn load_layers_keeps_order_and_names_each_file() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("env/10-base.yaml"), "a: 1\n");
        write(&dir.path().join("env/20-more.yaml"), "a: 2\nb: 2\n");
        write(&dir.path().join("cluster.yaml"), "b: 3\n");
        let layers =
            load_layers(&[dir.path().join("env"), dir.path().join("cluster.yaml")]).unwrap();
        let origins: Vec<&str> = layers.iter().map(|l| l.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                dir.path().join("env/10-base.yaml").display().to_string(),
                dir.path().join("env/20-more.yaml").display().to_string(),
                dir.path().join("cluster.yaml").display().to_string(),
            ]
        );
        assert_eq!(ser(&merge_layers(&layers)), r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn load_layers_fails_on_the_first_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.yaml"), "a: 1\n");
        write(&dir.path().join("b.yaml"), "- 1\n");
        let err = load_layers(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("b.yaml"), "{err}");
    }

    // --- --set ---------------------------------------------------------

    #[test]
    fn set_builds_nested_maps() {
        assert_eq!(
            ser(&set("a.b.c=x,a.d=1,e=2")),
            r#"{"a":{"b":{"c":"x"},"d":1},"e":2}"#
        );
        assert_eq!(ser(&set("a.b=1,c=2")), r#"{"a":{"b":1},"c":2}"#);
    }

    #[test]
    fn set_types_values_like_helm() {
        let cases = [
            ("true", json!(true)),
            ("TRUE", json!(true)),
            ("False", json!(false)),
            ("null", json!(null)),
            ("NULL", json!(null)),
            ("0", json!(0)),
            ("42", json!(42)),
            ("-5", json!(-5)),
            ("+5", json!(5)),
            ("-0", json!(0)),
            ("9223372036854775807", json!(i64::MAX)),
            // Helm only refuses a leading `0`, so a sign hides it.
            ("-0123", json!(-123)),
            ("9223372036854775808", json!("9223372036854775808")),
            ("1.0", json!("1.0")),
            ("0123", json!("0123")),
            ("00", json!("00")),
            ("1e3", json!("1e3")),
            ("1_000", json!("1_000")),
            ("-", json!("-")),
            ("", json!("")),
            ("yes", json!("yes")),
            (" 1", json!(" 1")),
        ];
        for (text, want) in cases {
            assert_eq!(set(&format!("k={text}"))["k"], want, "--set k={text}");
            assert_eq!(
                set_string(&format!("k={text}"))["k"],
                json!(text),
                "--set-string k={text}"
            );
        }
    }

    #[test]
    fn set_handles_escapes() {
        assert_eq!(set("a=x\\,y")["a"], json!("x,y"));
        assert_eq!(ser(&set("a\\.b=c")), r#"{"a.b":"c"}"#);
        assert_eq!(ser(&set("a\\=b=c")), r#"{"a=b":"c"}"#);
        assert_eq!(set("a=x\\\\y")["a"], json!("x\\y"));
        assert_eq!(set("a=\\{1}")["a"], json!("{1}"));
        assert_eq!(set("a={x\\,y,z}")["a"], json!(["x,y", "z"]));
        // Helm drops a lone trailing backslash.
        assert_eq!(set("a=x\\")["a"], json!("x"));
    }

    #[test]
    fn set_values_may_hold_equals_dots_and_brackets() {
        assert_eq!(set("a=b=c.d[0]")["a"], json!("b=c.d[0]"));
        assert_eq!(set("a=x{1}")["a"], json!("x{1}"));
    }

    #[test]
    fn set_empty_values_and_trailing_commas() {
        assert_eq!(ser(&set("a=")), r#"{"a":""}"#);
        assert_eq!(ser(&set("a=,b=1")), r#"{"a":"","b":1}"#);
        assert_eq!(ser(&set("a=1,")), r#"{"a":1}"#);
        assert!(set("").is_empty());
    }

    #[test]
    fn set_lists() {
        assert_eq!(set("a={1,2,3}")["a"], json!([1, 2, 3]));
        assert_eq!(set("a={true,x,0755}")["a"], json!([true, "x", "0755"]));
        assert_eq!(
            set_string("a={1,true,null}")["a"],
            json!(["1", "true", "null"])
        );
        // Helm reads `{}` as one empty element.
        assert_eq!(set("a={}")["a"], json!([""]));
        assert_eq!(ser(&set("a={1,2},b=3")), r#"{"a":[1,2],"b":3}"#);
        // Helm starts the next key straight after `}` when no `,` follows.
        assert_eq!(ser(&set("a={1}b=2")), r#"{"a":[1],"b":2}"#);
    }

    #[test]
    fn set_indexes_grow_and_nest() {
        assert_eq!(set("l[3]=x")["l"], json!([null, null, null, "x"]));
        assert_eq!(
            set("l={a,b,c},l[1]=B,l[4]=E")["l"],
            json!(["a", "B", "c", null, "E"])
        );
        assert_eq!(
            set("a[0].b=c,a[0].d=1,a[1].b=e")["a"],
            json!([{"b": "c", "d": 1}, {"b": "e"}])
        );
        assert_eq!(set("a[1][2]=x")["a"], json!([null, [null, null, "x"]]));
        assert_eq!(set("a[0]={1,2}")["a"], json!([[1, 2]]));
        assert_eq!(set("a.b[+1]=x")["a"], json!({"b": [null, "x"]}));
        assert_eq!(
            set(&format!("l[{MAX_INDEX}]=x"))["l"]
                .as_array()
                .unwrap()
                .len(),
            MAX_INDEX + 1
        );
    }

    #[test]
    fn set_replaces_non_maps_and_non_lists_on_its_path() {
        let mut m = map(json!({"a": "x", "n": null, "l": [1], "m": {"k": 1}, "e": [5, 6]}));
        apply_set("a.b=1,n.b=2,l.b=3,m[1]=4,e[0].k=7", true, &mut m).unwrap();
        assert_eq!(
            ser(&m),
            ser(&map(
                json!({"a": {"b": 1}, "n": {"b": 2}, "l": {"b": 3}, "m": [null, 4], "e": [{"k": 7}, 6]})
            ))
        );
    }

    #[test]
    fn set_edits_existing_maps_and_lists_in_place() {
        let mut m = map(json!({"foo": {"keep": 1, "list": ["a", "b", "c"]}}));
        apply_set("foo.list[1]=x,foo.new=2", true, &mut m).unwrap();
        assert_eq!(
            ser(&m),
            r#"{"foo":{"keep":1,"list":["a","x","c"],"new":2}}"#
        );
    }

    #[test]
    fn set_string_and_set_follow_the_kops_docs_example() {
        // kOps applies every --set before any --set-string, whatever the
        // order on the command line, so the later list replaces the edits.
        let mut m = Map::new();
        apply_set("version=1.0,foo.bar=baz", true, &mut m).unwrap();
        apply_set("foo.myArray[1]=false,foo.myArray[3]=4", true, &mut m).unwrap();
        assert_eq!(m["foo"]["myArray"], json!([null, false, null, 4]));
        apply_set("foo.myArray={1,2,3}", false, &mut m).unwrap();
        assert_eq!(
            ser(&m),
            r#"{"version":"1.0","foo":{"bar":"baz","myArray":["1","2","3"]}}"#
        );
    }

    #[test]
    fn set_errors() {
        let cases = [
            ("a", "key `a` has no value"),
            ("a.b", "key `a.b` has no value"),
            ("a,b=1", "key `a` has no value"),
            ("a[0]", "key `a[0]` has no value"),
            ("=1", "empty key"),
            (",a=1", "empty key"),
            ("a=1,,b=2", "empty key"),
            ("a..b=1", "empty key after `a`"),
            ("a.=1", "empty key after `a`"),
            ("a.", "empty key after `a`"),
            ("[0]=1", "empty key"),
            ("a={1,2", "list value of key `a` must end with `}`"),
            ("a[x]=1", "invalid index `[x]` in key `a`"),
            ("a[]=1", "invalid index `[]` in key `a`"),
            ("a[-1]=1", "negative index `[-1]` in key `a`"),
            (
                "a[65537]=1",
                "index `[65537]` in key `a` is greater than the maximum 65536",
            ),
            (
                "a[99999999999999999999]=1",
                "invalid index `[99999999999999999999]` in key `a`",
            ),
            ("a[1", "unterminated `[` in key `a`"),
            ("a[0]x=1", "unexpected text after index in key `a[0]`"),
            ("a[0],b=1", "unexpected text after index in key `a[0]`"),
            (
                "a=1,a.b=2",
                "key `a` is set to a value and then used as a map in `a.b`",
            ),
            (
                "a.b[0]=1,a.b.c=2",
                "key `a.b` is set to a value and then used as a map in `a.b.c`",
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(set_err(expr, true), want, "{expr}");
        }
        assert_eq!(set_err("a", false), "key `a` has no value");
        let deep = format!("{}=1", vec!["k"; 32].join("."));
        assert!(set_err(&deep, true).contains("more than 30 levels"));
        let deep = format!("a{}=1", "[0]".repeat(200));
        assert!(set_err(&deep, true).contains("levels deep"));
    }

    #[test]
    fn set_errors_name_the_flag_and_expression() {
        let err = apply_set("a", true, &mut Map::new()).unwrap_err();
        assert_eq!(err.to_string(), "invalid --set `a`: key `a` has no value");
        let err = apply_set("b", false, &mut Map::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --set-string `b`: key `b` has no value"
        );
    }

    #[test]
    fn a_failed_set_leaves_the_values_unchanged() {
        let mut m = map(json!({"a": 1}));
        assert!(apply_set("a=2,b=3,c", true, &mut m).is_err());
        assert_eq!(ser(&m), r#"{"a":1}"#);
    }

    #[test]
    fn set_allows_repeats_and_list_edits_after_a_value() {
        assert_eq!(ser(&set("a=1,a=2")), r#"{"a":2}"#);
        assert_eq!(set("a=1,a[1]=2")["a"], json!([null, 2]));
        assert_eq!(set("a.b=1,a=2")["a"], json!(2));
        assert_eq!(set("a[0]=5,a[0].k=1")["a"], json!([{"k": 1}]));
    }

    // --- set layers ----------------------------------------------------

    #[test]
    fn set_layer_carries_the_whole_list_it_edits() {
        let base = map(json!({"foo": {"keep": 1, "list": ["a", "b", "c"]}, "other": 1}));
        let layer = set_layer("foo.list[1]=x,foo.n=1", true, &base).unwrap();
        assert_eq!(layer.origin, "--set foo.list[1]=x,foo.n=1");
        assert_eq!(
            ser(&layer.values),
            r#"{"foo":{"list":["a","x","c"],"n":1}}"#
        );
        let mut merged = base.clone();
        merge(&mut merged, layer.values);
        let mut direct = base;
        apply_set("foo.list[1]=x,foo.n=1", true, &mut direct).unwrap();
        assert_eq!(ser(&merged), ser(&direct));
    }

    #[test]
    fn push_set_layer_reproduces_the_kops_docs_example() {
        let mut layers = Vec::new();
        push_set_layer(&mut layers, "version=1.0,foo.bar=baz", true).unwrap();
        push_set_layer(&mut layers, "foo.myArray[1]=false,foo.myArray[3]=4", true).unwrap();
        push_set_layer(&mut layers, "foo.myArray={1,2,3}", false).unwrap();
        assert_eq!(layers[2].origin, "--set-string foo.myArray={1,2,3}");
        assert_eq!(
            ser(&merge_layers(&layers)),
            r#"{"version":"1.0","foo":{"bar":"baz","myArray":["1","2","3"]}}"#
        );
        let e = explain(&layers, "foo.myArray.1");
        assert_eq!(e.winner, Some(2));
        assert_eq!(e.contributions[1].value, Some(json!(false)));
        assert_eq!(e.contributions[2].value, Some(json!("2")));
        assert!(push_set_layer(&mut layers, "x", true).is_err());
        assert_eq!(layers.len(), 3);
    }

    // --- Terraform outputs ---------------------------------------------

    /// What `terraform output -json` prints (Terraform 1.x): strings, a
    /// tuple, a map of objects, a number, a boolean and a sensitive output.
    const TERRAFORM_OUTPUT: &str = include_str!("../../../tests/fixtures/terraform-output.json");

    #[test]
    fn terraform_outputs_are_unwrapped_in_order_and_sensitive_ones_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tf.json");
        write(&path, TERRAFORM_OUTPUT);
        let outputs = read_terraform_output(&path).unwrap();
        assert_eq!(outputs.layer.origin, path.display().to_string());
        assert_eq!(
            ser(&outputs.layer.values),
            r#"{"cluster_name":"prod.k8s.example.com","dns_zone_id":"Z0123456789ABCDEFGHIJ","enable_bastion":true,"node_count":3,"oidc_client_secret":"tf-s3cr3t-4f9a","private_subnet_ids":["subnet-0a1b2c3d4e5f60001","subnet-0a1b2c3d4e5f60002"],"subnets":{"eu-west-1a":{"cidr":"10.0.32.0/19","id":"subnet-0a1b2c3d4e5f60001"},"eu-west-1b":{"cidr":"10.0.64.0/19","id":"subnet-0a1b2c3d4e5f60002"}}}"#
        );
        assert_eq!(
            outputs.sensitive.keys().collect::<Vec<_>>(),
            ["oidc_client_secret"]
        );
        // No outputs at all.
        write(&path, "{}\n");
        let outputs = read_terraform_output(&path).unwrap();
        assert!(outputs.layer.values.is_empty() && outputs.sensitive.is_empty());
    }

    #[test]
    fn a_file_that_is_not_terraform_output_is_refused_with_its_location_and_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tf.json");
        let secret = "tf-s3cr3t-4f9a";
        for (text, line, column, message) in [
            // `terraform output -json NAME` prints the bare value.
            (
                format!("\"{secret}\"\n"),
                1,
                1,
                "not the output of `terraform output -json`: expected a mapping of outputs at the top level, found a string",
            ),
            (
                format!("[\"{secret}\"]\n"),
                1,
                1,
                "not the output of `terraform output -json`: expected a mapping of outputs at the top level, found a list",
            ),
            (
                String::new(),
                1,
                1,
                "not the output of `terraform output -json`: expected a mapping of outputs at the top level, found nothing",
            ),
            // A plain values file.
            (
                format!("{{\n  \"vpc_id\": \"vpc-1\",\n  \"token\": \"{secret}\"\n}}\n"),
                2,
                13,
                "output `vpc_id` is a string, not the mapping of `value`, `type` and `sensitive` that `terraform output -json` prints (`terraform output -json NAME` prints a bare value: give the file of all outputs)",
            ),
            (
                format!(
                    "{{\n  \"a\": {{\"sensitive\": false, \"type\": \"string\", \"value\": \"x\"}},\n  \"token\": {{\"value\": \"{secret}\"}}\n}}\n"
                ),
                3,
                12,
                "output `token` has no `type`, `sensitive`: not what `terraform output -json` prints (`terraform output -json NAME` prints a bare value: give the file of all outputs)",
            ),
            (
                format!(
                    "{{\"token\": {{\"sensitive\": \"yes\", \"type\": \"string\", \"value\": \"{secret}\"}}}}\n"
                ),
                1,
                11,
                "output `token`: `sensitive` must be true or false",
            ),
        ] {
            write(&path, &text);
            let err = read_terraform_output(&path).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{text}: {shown}");
            match err {
                Error::Yaml {
                    origin,
                    line: l,
                    column: c,
                    message: m,
                } => {
                    assert_eq!(origin, path.display().to_string());
                    assert_eq!((l, c), (line, column), "{text}");
                    assert_eq!(m, message, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Broken JSON and duplicate outputs are syntax errors with a location.
        for text in [
            "{\"a\": {\"value\": 1,\n",
            "{\"a\": {\"sensitive\": false, \"type\": \"number\", \"value\": 1},\n \"a\": {\"sensitive\": false, \"type\": \"number\", \"value\": 2}}\n",
        ] {
            write(&path, text);
            let err = read_terraform_output(&path).unwrap_err();
            assert!(
                matches!(err, Error::Yaml { line, .. } if line >= 1),
                "{err:?}"
            );
        }
    }

    #[test]
    fn sources_load_in_the_given_order_with_their_sensitive_keys() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("tf.json");
        write(&tf, TERRAFORM_OUTPUT);
        let before = dir.path().join("before.yaml");
        write(&before, "node_count: 1\nextra: a\n");
        let after = dir.path().join("after.yaml");
        write(&after, "enable_bastion: false\n");
        let (layers, sensitive) = load_sources(&[
            Source::File(before.clone()),
            Source::TerraformOutput(tf.clone()),
            Source::File(after.clone()),
        ])
        .unwrap();
        let origins: Vec<&str> = layers.iter().map(|l| l.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                before.display().to_string(),
                tf.display().to_string(),
                after.display().to_string()
            ]
        );
        let merged = merge_layers(&layers);
        assert_eq!(merged["node_count"], json!(3));
        assert_eq!(merged["enable_bastion"], json!(false));
        assert_eq!(merged["extra"], json!("a"));
        assert!(sensitive.covers("oidc_client_secret"));
        assert!(sensitive.covers("oidc_client_secret.anything"));
        assert!(!sensitive.covers("oidc"));
        assert!(!sensitive.covers("node_count"));
    }

    #[test]
    fn explain_never_shows_a_sensitive_output() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("tf.json");
        write(&tf, TERRAFORM_OUTPUT);
        let plain = dir.path().join("plain.yaml");
        write(&plain, "oidc_client_secret: overridden\nother: 1\n");
        let (layers, sensitive) =
            load_sources(&[Source::TerraformOutput(tf), Source::File(plain)]).unwrap();
        let mut e = explain(&layers, "oidc_client_secret");
        sensitive.redact(&mut e);
        assert_eq!(e.winner, Some(1));
        for c in &e.contributions {
            assert_eq!(c.value, Some(json!(SENSITIVE_PLACEHOLDER)));
            assert!(c.sensitive);
        }
        let shown = format!("{e:?}");
        assert!(!shown.contains("tf-s3cr3t-4f9a") && !shown.contains("overridden"));
        // Other keys are untouched.
        let mut e = explain(&layers, "other");
        sensitive.redact(&mut e);
        assert_eq!(e.contributions[0].value, None);
        assert_eq!(e.contributions[1].value, Some(json!(1)));
        assert!(!e.contributions[1].sensitive);
    }

    // --- lookup and explain -------------------------------------------

    #[test]
    fn lookup_follows_maps_and_list_indexes() {
        let m = map(
            json!({"a": {"b": 1}, "subnets": [{"name": "a"}, {"name": "b"}], "m": {"0": "key"}}),
        );
        assert_eq!(lookup(&m, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(&m, "a"), Some(&json!({"b": 1})));
        assert_eq!(lookup(&m, "subnets.1.name"), Some(&json!("b")));
        assert_eq!(lookup(&m, "m.0"), Some(&json!("key")));
        for missing in [
            "",
            "x",
            "a.c",
            "a.b.c",
            "subnets.2.name",
            "subnets.x",
            "subnets.-1",
            "a.",
        ] {
            assert_eq!(lookup(&m, missing), None, "{missing}");
        }
    }

    fn layer(origin: &str, v: Value) -> Layer {
        Layer {
            origin: origin.into(),
            values: map(v),
        }
    }

    #[test]
    fn explain_names_the_last_layer_that_sets_a_value() {
        let layers = vec![
            layer("base.yaml", json!({"ig": {"type": "m4.large", "ami": "x"}})),
            layer("env.yaml", json!({"other": 1})),
            layer("cluster.yaml", json!({"ig": {"type": "t2.large"}})),
        ];
        let e = explain(&layers, "ig.type");
        assert_eq!(e.key, "ig.type");
        assert_eq!(e.winner, Some(2));
        let values: Vec<Option<Value>> = e.contributions.iter().map(|c| c.value.clone()).collect();
        assert_eq!(
            values,
            [Some(json!("m4.large")), None, Some(json!("t2.large"))]
        );
        assert_eq!(e.contributions[1].origin, "env.yaml");
        assert_eq!(explain(&layers, "ig.ami").winner, Some(0));
        // For a map, the winner is the last layer touching it.
        assert_eq!(explain(&layers, "ig").winner, Some(2));
        assert_eq!(explain(&layers, "nope").winner, None);
    }

    #[test]
    fn explain_has_no_winner_when_a_later_layer_replaces_a_parent() {
        let layers = vec![
            layer("a", json!({"p": {"k": 1}})),
            layer("b", json!({"p": "flat"})),
        ];
        let e = explain(&layers, "p.k");
        assert_eq!(e.winner, None);
        assert_eq!(e.contributions[0].value, Some(json!(1)));
        assert_eq!(e.contributions[1].value, None);
        assert_eq!(lookup(&merge_layers(&layers), "p.k"), None);

        let layers = vec![
            layer("a", json!({"p": {"k": 1}})),
            layer("b", json!({"p": "flat"})),
            layer("c", json!({"p": {"k": 3}})),
        ];
        assert_eq!(explain(&layers, "p.k").winner, Some(2));
    }

    #[test]
    fn explain_reads_through_lists_a_layer_replaces_whole() {
        let layers = vec![
            layer("a", json!({"subnets": [{"name": "one"}, {"name": "two"}]})),
            layer("b", json!({"subnets": [{"name": "uno"}]})),
        ];
        let e = explain(&layers, "subnets.1.name");
        assert_eq!(e.contributions[0].value, Some(json!("two")));
        assert_eq!(e.winner, None);
        let e = explain(&layers, "subnets.0.name");
        assert_eq!(e.winner, Some(1));
        assert_eq!(e.contributions[1].value, Some(json!("uno")));
    }

    // --- display -------------------------------------------------------

    #[test]
    fn display_prints_scalars_bare_and_structures_as_yaml() {
        assert_eq!(to_display_yaml(&json!("1.34.1")).unwrap(), "1.34.1");
        assert_eq!(to_display_yaml(&json!("yes")).unwrap(), "yes");
        assert_eq!(to_display_yaml(&json!(42)).unwrap(), "42");
        assert_eq!(to_display_yaml(&json!(-1.5)).unwrap(), "-1.5");
        assert_eq!(to_display_yaml(&json!(true)).unwrap(), "true");
        assert_eq!(to_display_yaml(&json!(null)).unwrap(), "null");
        assert_eq!(
            to_display_yaml(&json!({"a": 1, "b": ["x"]})).unwrap(),
            "a: 1\nb:\n- x"
        );
        assert_eq!(to_display_yaml(&json!([1, 2])).unwrap(), "- 1\n- 2");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn ser(m: &Map) -> String {
        serde_json::to_string(m).unwrap()
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..100).prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::String),
        ]
    }

    /// Values over a small key set, so that layers collide often.
    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-c]", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn values_map() -> impl Strategy<Value = Map> {
        prop::collection::vec(("[a-c]", value()), 0..4).prop_map(|kv| kv.into_iter().collect())
    }

    /// Maps where a key's name fixes its shape (`m*` always a map, `s*`
    /// never), the case where merging is associative.
    fn shaped_map(depth: u32) -> BoxedStrategy<Map> {
        let non_map = prop_oneof![
            leaf(),
            prop::collection::vec(leaf(), 0..3).prop_map(Value::Array)
        ];
        let leaves = prop::collection::vec(("s[1-3]", non_map), 0..3);
        if depth == 0 {
            return leaves.prop_map(|kv| kv.into_iter().collect()).boxed();
        }
        (
            leaves,
            prop::collection::vec(("m[1-2]", shaped_map(depth - 1)), 0..3),
        )
            .prop_map(|(leaves, maps)| {
                let mut m: Map = leaves.into_iter().collect();
                for (k, v) in maps {
                    m.insert(k, Value::Object(v));
                }
                m
            })
            .boxed()
    }

    fn esc(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            if "\\,.=[]{}".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    fn scalar_text(v: &Value) -> String {
        match v {
            Value::String(s) => esc(s),
            other => other.to_string(),
        }
    }

    fn render(prefix: &str, m: &Map, out: &mut Vec<String>) {
        for (k, v) in m {
            let key = if prefix.is_empty() {
                esc(k)
            } else {
                format!("{prefix}.{}", esc(k))
            };
            match v {
                Value::Object(inner) => render(&key, inner, out),
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(scalar_text).collect();
                    out.push(format!("{key}={{{}}}", items.join(",")));
                }
                other => out.push(format!("{key}={}", scalar_text(other))),
            }
        }
    }

    /// Scalars that `--set` reads back as themselves.
    fn set_scalar(typed: bool) -> BoxedStrategy<Value> {
        let text = "[a-z0-9 ,.=\\[\\]{}\\\\-]{0,6}";
        if !typed {
            return text.prop_map(Value::String).boxed();
        }
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            text.prop_filter_map("typed text", |s| match scalar(s.clone(), true) {
                Value::String(_) => Some(Value::String(s)),
                _ => None,
            }),
        ]
        .boxed()
    }

    fn set_map(typed: bool) -> impl Strategy<Value = Map> {
        let key = "[a-z][a-z0-9_.=,\\[\\]\\\\]{0,5}";
        let leaf = prop_oneof![
            set_scalar(typed),
            prop::collection::vec(set_scalar(typed), 1..4).prop_map(Value::Array),
        ];
        let value = leaf.prop_recursive(2, 12, 3, move |inner| {
            prop::collection::vec((key, inner), 1..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        });
        prop::collection::vec((key, value), 0..4).prop_map(|kv| kv.into_iter().collect())
    }

    /// `--set` expressions over the same small key set as `values_map`.
    fn set_expr() -> impl Strategy<Value = String> {
        let seg = prop_oneof![".[a-c]", "\\[[0-3]\\]"];
        let path =
            ("[a-c]", prop::collection::vec(seg, 0..4)).prop_map(|(k, rest)| k + &rest.concat());
        let value = prop_oneof![
            Just("x"),
            Just("1"),
            Just("true"),
            Just("null"),
            Just("{1,y}"),
            Just("")
        ];
        prop::collection::vec((path, value), 1..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(p, v)| format!("{p}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    proptest! {
        #[test]
        fn merging_an_empty_layer_is_identity(a in values_map()) {
            let mut m = a.clone();
            merge(&mut m, Map::new());
            prop_assert_eq!(ser(&m), ser(&a));
        }

        #[test]
        fn merging_a_map_with_itself_is_identity(a in values_map()) {
            let mut m = a.clone();
            merge(&mut m, a.clone());
            prop_assert_eq!(ser(&m), ser(&a));
        }

        #[test]
        fn merge_keeps_every_key_of_both(a in values_map(), b in values_map()) {
            let mut m = a.clone();
            merge(&mut m, b.clone());
            for k in a.keys().chain(b.keys()) {
                prop_assert!(m.contains_key(k));
            }
            prop_assert!(m.len() <= a.len() + b.len());
        }

        #[test]
        fn a_later_non_map_always_wins(a in values_map(), b in values_map()) {
            let mut m = a.clone();
            merge(&mut m, b.clone());
            for (k, v) in &b {
                if !v.is_object() {
                    prop_assert_eq!(&m[k], v);
                }
            }
        }

        #[test]
        fn merge_is_associative_for_consistently_shaped_maps(
            a in shaped_map(2), b in shaped_map(2), c in shaped_map(2),
        ) {
            let (left, right) = merge_both_ways(a, b, c);
            prop_assert_eq!(ser(&left), ser(&right));
        }

        #[test]
        fn set_never_panics(expr in any::<String>(), typed in any::<bool>(), base in values_map()) {
            let mut m = base.clone();
            let _ = apply_set(&expr, typed, &mut m);
            let _ = set_layer(&expr, typed, &base);
        }

        #[test]
        fn set_never_panics_on_set_syntax(
            expr in "[a-c.=,\\[\\]{}0-9\\\\ -]{0,40}", typed in any::<bool>(), base in values_map(),
        ) {
            let mut m = base.clone();
            if apply_set(&expr, typed, &mut m).is_err() {
                prop_assert_eq!(ser(&m), ser(&base));
            }
        }

        #[test]
        fn set_reads_back_a_rendered_map(
            (typed, want) in any::<bool>().prop_flat_map(|t| (Just(t), set_map(t))),
        ) {
            let mut pairs = Vec::new();
            render("", &want, &mut pairs);
            let expr = pairs.join(",");
            let mut got = Map::new();
            apply_set(&expr, typed, &mut got).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ser(&got), ser(&want), "expr: {}", expr);
        }

        #[test]
        fn set_string_only_makes_strings(expr in "[a-c.=,\\[\\]{}0-9tuefrnl\\\\-]{0,40}") {
            let mut m = Map::new();
            if apply_set(&expr, false, &mut m).is_ok() {
                for v in m.values() {
                    prop_assert!(strings_or_holes(v), "{:?}", v);
                }
            }
        }

        #[test]
        fn a_set_layer_merged_equals_set_applied(base in values_map(), expr in set_expr(), typed in any::<bool>()) {
            let mut direct = base.clone();
            let applied = apply_set(&expr, typed, &mut direct);
            let layer = set_layer(&expr, typed, &base);
            prop_assert_eq!(applied.is_ok(), layer.is_ok());
            if let Ok(layer) = layer {
                let mut merged = base;
                merge(&mut merged, layer.values);
                prop_assert_eq!(ser(&merged), ser(&direct), "expr: {}", expr);
            }
        }

        #[test]
        fn explain_agrees_with_the_merge(
            layers in prop::collection::vec(values_map(), 0..5),
            segs in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c"), Just("0"), Just("1")], 1..4),
        ) {
            let layers: Vec<Layer> = layers.into_iter().enumerate()
                .map(|(i, values)| Layer { origin: format!("l{i}"), values })
                .collect();
            let dotted = segs.join(".");
            let merged = merge_layers(&layers);
            let want = lookup(&merged, &dotted);
            let e = explain(&layers, &dotted);
            prop_assert_eq!(e.contributions.len(), layers.len());
            prop_assert_eq!(e.winner.is_some(), want.is_some());
            if let (Some(w), Some(want)) = (e.winner, want) {
                let got = e.contributions[w].value.as_ref();
                prop_assert!(got.is_some());
                if want.is_object() {
                    prop_assert!(got.is_some_and(Value::is_object));
                } else {
                    prop_assert_eq!(got, Some(want));
                }
            }
        }
    }

    /// `--set-string` makes strings; index padding adds `null` holes.
    fn strings_or_holes(v: &Value) -> bool {
        match v {
            Value::String(_) | Value::Null => true,
            Value::Array(items) => items.iter().all(strings_or_holes),
            Value::Object(m) => m.values().all(strings_or_holes),
            _ => false,
        }
    }
}
