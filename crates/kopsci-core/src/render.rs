//! The render engine: Jinja templates and snippets (minijinja) rendered with
//! a values map into kOps manifests, with the document handling of
//! `kops toolbox template`, and errors that name file, line and expression
//! but never a value.
//!
//! Semantics, in kOps' terms:
//!
//! * Templates render in the given order (directories walked recursively in
//!   lexical order, hidden entries skipped). Each output is split on `---\n`;
//!   pieces that are blank once trimmed are dropped; the documents of all
//!   templates are joined with `---\n`. Templates keep their final newline,
//!   like Go templates. One deliberate difference from kOps: a document that
//!   does not end in a newline gets one before the next `---\n`, where kOps
//!   would glue the separator onto its last line and silently corrupt it.
//! * Snippets live in a flat namespace by file basename
//!   (`snippets/a/b/docker.options` is `docker.options`); two files with the
//!   same basename are an error. `include(name)` renders a snippet with the
//!   root values, `include(name, ctx)` with the mapping `ctx`; the result is a
//!   string, so `{{ include("unit") | nindent(4) }}` works. The tags
//!   `{% include %}` and `{% import %}` also find snippets by basename.
//! * Strict mode (`fail_on_missing`) fails on any use of an undefined value
//!   except `is defined`/`is undefined`, `default` and `required`: printing
//!   it, passing it to any filter, test or function, or printing or
//!   serialising a list or map that holds one. Lenient mode prints undefined
//!   values as nothing (and `tojson` as `null`), as minijinja does. Errors
//!   name `file:line:column` of the undefined expression.
//! * Render work is bounded ([`RenderLimits`]): steps (minijinja fuel,
//!   counted across all templates and snippets of one render, `include`
//!   calls included), output bytes and include depth. A template is written
//!   by whoever opens a merge request; exceeding a bound is an error naming
//!   the template, not a CI job that runs until it is killed.
//! * Every output document must parse as YAML; with `format_yaml` each one is
//!   parsed and written back (documents that hold only comments are dropped,
//!   as kOps does).
//! * `{{ value }}` prints YAML-friendly text rather than minijinja's
//!   Python-style text: `true`/`false`, nothing for `none`, compact JSON for
//!   lists and maps. The added filters and functions are in the `functions`
//!   module.
//!
//! Rendering never touches the network or the kops binary: kOps' `Channel*`
//! functions do not exist here.

pub(crate) mod functions;
pub(crate) mod sprig;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};

use crate::errors::{Error, Result};
use crate::values::Map;

/// How one render behaves; the flags of `kops toolbox template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Fail on any use of an undefined value (`--fail-on-missing`, default
    /// true). When false, undefined values print as nothing.
    pub fail_on_missing: bool,
    /// Parse every document and write it back normalised (`--format-yaml`).
    pub format_yaml: bool,
}

impl Default for RenderOptions {
    /// kOps' defaults: strict, not reformatted.
    fn default() -> Self {
        RenderOptions {
            fail_on_missing: true,
            format_yaml: false,
        }
    }
}

/// How deep `include` may nest before the render fails: deep enough for
/// any real snippet tree, shallow enough that a snippet that includes itself
/// fails fast with a clear message instead of exhausting memory.
pub const MAX_INCLUDE_DEPTH: usize = 64;

/// The default render budget in steps (template instructions, minijinja's
/// "fuel") for one cluster's manifest, all templates and snippets together.
/// The reference fleet's largest cluster needs about 150,000, most of it the
/// price of its `include` calls ([`INCLUDE_COST`]).
pub const DEFAULT_FUEL: u64 = 5_000_000;

/// What one `include(...)` call costs in steps on top of the snippet's own
/// instructions: starting a render is real work, and without a price a
/// snippet that includes another one twice per level would double the work
/// per level while each level stays cheap.
pub const INCLUDE_COST: u64 = 1_000;

/// The default cap on the text one cluster's render produces, all templates
/// and snippets together (a snippet's text counts where it is rendered and
/// again where it is inserted): kOps manifests are kilobytes.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Bounds on the work of one render, so that a template (written by whoever
/// opens a merge request) cannot keep a CI job busy until it is killed.
/// Exceeding one is an error naming the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// Steps for all templates and snippets of one render together; see
    /// [`DEFAULT_FUEL`] and [`INCLUDE_COST`].
    pub fuel: u64,
    /// Bytes of text for all templates and snippets of one render together.
    pub output_bytes: usize,
    /// How deep `include(...)` calls may nest. `{% include %}` tags, macros
    /// and recursive loops are bounded by minijinja's recursion limit (about
    /// 50 nested include tags).
    pub include_depth: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            fuel: DEFAULT_FUEL,
            output_bytes: MAX_OUTPUT_BYTES,
            include_depth: MAX_INCLUDE_DEPTH,
        }
    }
}

/// A set of templates and snippets, read and parsed once, then rendered any
/// number of times, from any number of threads, with different values.
pub struct TemplateSet {
    /// Both environments hold the same compiled templates (cloning shares
    /// them); minijinja's undefined behaviour is a per-environment setting.
    strict: Environment<'static>,
    lenient: Environment<'static>,
    templates: Vec<PathBuf>,
    /// The environment name of each entry of `templates`: its displayed path.
    template_names: Vec<String>,
    snippets: Vec<PathBuf>,
    /// Snippet files by environment name, to turn what a tracked render
    /// reached back into paths.
    snippet_files: BTreeMap<String, PathBuf>,
    limits: RenderLimits,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet")
            .field("templates", &self.templates)
            .field("snippets", &self.snippets)
            .finish_non_exhaustive()
    }
}

impl TemplateSet {
    /// Reads and parses templates and snippets. Each path is a file or a
    /// directory (walked recursively in lexical order, hidden entries
    /// skipped). Syntax errors in any file, including snippets that no
    /// template uses, fail here with `file:line`.
    pub fn load(templates: &[PathBuf], snippets: &[PathBuf]) -> Result<TemplateSet> {
        let template_files = crate::values::expand_paths(templates)?;
        let snippet_files = crate::values::expand_paths(snippets)?;

        let mut env = Environment::new();
        // Debug info would render the values of nearby variables into error
        // messages; values may be secrets. Spans are kept without it.
        env.set_debug(false);
        // minijinja would JSON-escape `{{ x }}` in `*.yaml` templates by
        // default; kOps templates are plain text substitution.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| Error::Template {
                location: "<syntax>".to_string(),
                message: e.to_string(),
            })?;
        env.set_syntax(syntax);
        functions::register(&mut env);
        sprig::register(&mut env);

        // Snippets: basename → environment name (the displayed path).
        let mut by_basename: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
        let mut snippet_paths = Vec::new();
        let mut snippets_by_name = BTreeMap::new();
        for path in &snippet_files {
            let basename = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            if let Some((first, _)) = by_basename.get(&basename) {
                if same_file(first, path) {
                    continue;
                }
                return Err(Error::Template {
                    location: path.display().to_string(),
                    message: format!(
                        "snippet `{basename}` is defined twice: {} and {} (snippet names are file basenames and must be unique)",
                        first.display(),
                        path.display()
                    ),
                });
            }
            let name = path.display().to_string();
            add_template(&mut env, &name, path)?;
            snippets_by_name.insert(name.clone(), path.clone());
            by_basename.insert(basename, (path.clone(), name));
            snippet_paths.push(path.clone());
        }
        let snippet_names: Arc<BTreeMap<String, String>> = Arc::new(
            by_basename
                .into_iter()
                .map(|(base, (_, name))| (base, name))
                .collect(),
        );

        let names = Arc::clone(&snippet_names);
        // The context is taken as a raw rest argument: an `Option<Value>`
        // argument would turn an undefined context into "no context" and
        // silently render with the root values.
        env.add_function(
            "include",
            move |state: &State, name: Cow<'_, str>, rest: Rest<Value>| {
                if rest.len() > 1 {
                    return Err(minijinja::Error::new(
                        ErrorKind::TooManyArguments,
                        "include takes a snippet name and an optional context",
                    ));
                }
                include(state, &names, &name, rest.first().cloned())
            },
        );
        let names = Arc::clone(&snippet_names);
        // minijinja resolves every `{% include %}` / `{% import %}` name
        // through this callback, so it is also where tag includes are seen
        // by a tracked render, and where they pay for the work of starting
        // one. The callback cannot fail: over budget, it names a template
        // that does not exist, and the render reports the budget.
        env.set_path_join_callback(move |name, _parent| {
            if !budget_charge(INCLUDE_COST) {
                return Cow::Borrowed(OVER_BUDGET_TEMPLATE);
            }
            match names.get(name) {
                Some(path_name) => {
                    record_snippet(path_name);
                    Cow::Owned(path_name.clone())
                }
                None => Cow::Borrowed(name),
            }
        });

        // Last, once every function (including `include`) is registered.
        functions::guard_functions(&mut env);

        let mut template_names = Vec::with_capacity(template_files.len());
        for path in &template_files {
            let name = path.display().to_string();
            if env.get_template(&name).is_err() {
                add_template(&mut env, &name, path)?;
            }
            template_names.push(name);
        }

        let mut strict = env;
        strict.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut lenient = strict.clone();
        lenient.set_undefined_behavior(UndefinedBehavior::Lenient);

        Ok(TemplateSet {
            strict,
            lenient,
            templates: template_files,
            template_names,
            snippets: snippet_paths,
            snippet_files: snippets_by_name,
            limits: RenderLimits::default(),
        }
        .with_limits(RenderLimits::default()))
    }

    /// The same set with other bounds on render work (the default is
    /// [`RenderLimits::default`]).
    pub fn with_limits(mut self, limits: RenderLimits) -> TemplateSet {
        // Every render state (each template, each `include` call) gets the
        // whole budget as its own fuel; the frame's accounting across states
        // keeps the render as a whole within it.
        self.strict.set_fuel(Some(limits.fuel));
        self.lenient.set_fuel(Some(limits.fuel));
        self.limits = limits;
        self
    }

    /// The bounds on render work in effect.
    pub fn limits(&self) -> RenderLimits {
        self.limits
    }

    /// The template files, in render order (directories expanded).
    pub fn template_paths(&self) -> &[PathBuf] {
        &self.templates
    }

    /// The snippet files (directories expanded, duplicates of one file
    /// listed once).
    pub fn snippet_paths(&self) -> &[PathBuf] {
        &self.snippets
    }

    /// Renders every template with `values` and returns the joined
    /// manifest: documents separated by `---\n`.
    pub fn render(&self, values: &Map, opts: &RenderOptions) -> Result<String> {
        let root = functions::map_to_value(values);
        let _frame = RenderFrame::enter(root.clone(), false, self.limits);
        self.render_in_frame(&root, opts)
    }

    /// Like [`render`](Self::render), and also returns the snippet files
    /// this render actually reached, through `include(...)` or the
    /// `{% include %}` / `{% import %}` tags, nested ones included. A
    /// snippet behind a branch that was not taken is not listed: this is
    /// what tells `kopsci pipeline` which clusters a snippet change affects.
    pub fn render_tracked(
        &self,
        values: &Map,
        opts: &RenderOptions,
    ) -> Result<(String, BTreeSet<PathBuf>)> {
        let root = functions::map_to_value(values);
        let frame = RenderFrame::enter(root.clone(), true, self.limits);
        let text = self.render_in_frame(&root, opts)?;
        let files = frame
            .reached()
            .iter()
            .filter_map(|name| self.snippet_files.get(name).cloned())
            .collect();
        Ok((text, files))
    }

    /// The render itself; the caller has installed the frame.
    fn render_in_frame(&self, root: &Value, opts: &RenderOptions) -> Result<String> {
        let env = if opts.fail_on_missing {
            &self.strict
        } else {
            &self.lenient
        };

        let mut documents: Vec<String> = Vec::new();
        for name in &self.template_names {
            let rendered = env
                .get_template(name)
                .and_then(|t| {
                    budget_check(0)?;
                    let (text, used) = render_counted(&t, root.clone())?;
                    budget_finished(used);
                    budget_check(0)?;
                    Ok(text)
                })
                .map_err(|e| template_error(&e, env, root, name))?;
            for (i, doc) in split_documents(&rendered).enumerate() {
                documents.push(check_document(name, i + 1, doc, opts.format_yaml)?);
            }
        }
        Ok(join_documents(
            documents
                .iter()
                .filter(|d| !d.is_empty())
                .map(String::as_str),
        ))
    }
}

/// Writes a rendered manifest to `path` (`render --out`) atomically: through
/// a temporary file in the same directory, renamed into place once fully
/// written, so a failure never leaves a half-written manifest. Manifests are
/// not secrets and are committed to git: a file that exists keeps its mode,
/// a new one gets the mode any tool's new file gets (`0666` less the umask),
/// never the private `0600` of a temporary file.
pub fn write_output(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let existing = match std::fs::metadata(path) {
        Ok(meta) => Some(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, e)),
    };
    // The kernel applies the umask to the mode a file is created with.
    let mut tmp = tempfile::Builder::new()
        .prefix(".kopsci-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    if let Some(permissions) = existing {
        // Exactly the old mode, whatever the umask would have left of it.
        tmp.as_file()
            .set_permissions(permissions)
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.write_all(contents).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Adds one file to the environment under `name`, turning a syntax error
/// into `file:line: syntax error: …`.
fn add_template(env: &mut Environment<'static>, name: &str, path: &Path) -> Result<()> {
    let source = crate::fsutil::read_to_string(path)?;
    // Kept for the error's column: a template that failed to parse is not in
    // the environment to look it up.
    let text = source.clone();
    env.add_template_owned(name.to_string(), source)
        .map_err(|e| {
            let message = describe(&e, None, &Value::UNDEFINED, name).message;
            let location = location_at(&e, name, Some(&text), e.range().map(|r| r.start));
            Error::Template { location, message }
        })
}

/// Whether two paths name the same file (the same snippet reached through
/// two `--snippets` arguments is not a duplicate).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Splits one template's output into documents on `---\n`, as kOps does,
/// dropping pieces that are blank once trimmed (kOps drops them only with
/// `--format-yaml`; docs/migrate.md lists the difference).
fn split_documents(rendered: &str) -> impl Iterator<Item = &str> {
    rendered
        .split("---\n")
        .filter(|piece| !piece.trim().is_empty())
}

/// Joins documents with `---\n`, ending a document with a newline first
/// when it lacks one (kOps would corrupt its last line instead).
fn join_documents<'a>(documents: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, doc) in documents.enumerate() {
        if i > 0 {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(doc);
    }
    out
}

/// Checks that a document parses as YAML and returns what goes into the
/// output: the document itself, or with `format` its normalised form (empty
/// when it holds no data, so the caller drops it). `index` is 1-based among
/// the template's documents.
fn check_document(template: &str, index: usize, doc: &str, format: bool) -> Result<String> {
    let located = |line: u64, column: u64, message: &str| Error::RenderedYaml {
        template: template.to_string(),
        index,
        line,
        column,
        message: yaml_message(message),
    };
    let parsed: serde_json::Value = crate::yaml::from_str(doc, template).map_err(|e| match e {
        Error::Yaml {
            line,
            column,
            message,
            ..
        } => located(line, column, &message),
        _ => located(0, 0, ""),
    })?;
    if !format {
        return Ok(doc.to_string());
    }
    if parsed.is_null() {
        return Ok(String::new());
    }
    crate::yaml::to_string(&parsed).map_err(|e| located(0, 0, &e.to_string()))
}

/// Reduces a YAML parser message to its kind. A rendered document holds
/// values, and parser messages quote pieces of it (`duplicate mapping key:
/// <key>`), so everything after the first `: ` and anything quoted goes; the
/// line and column are reported separately.
fn yaml_message(message: &str) -> String {
    if message.starts_with("multiple YAML documents") {
        // kOps splits only on `---\n`; `---\r\n` or `--- text` stay inside.
        return "more than one YAML document: documents are split only on a line that is exactly `---` ending in `\\n` (check for `\\r\\n` line endings or text after `---`)".to_string();
    }
    let mut text = message.split(": ").next().unwrap_or_default();
    if let Some(at) = text.find(" at line ") {
        text = &text[..at];
    }
    if let Some(quote) = text.find(['`', '"', '\'']) {
        text = &text[..quote];
    }
    let text = text.trim().trim_end_matches([',', ';', ':']);
    if text.is_empty() {
        "not valid YAML".to_string()
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------
// include

thread_local! {
    /// The root values of the render running on this thread, for
    /// `include(name)` without a context. minijinja gives functions no access
    /// to the initial context, and a nested render starts a fresh state, so
    /// the render frame lives here for the duration of `TemplateSet::render`.
    static ROOT: RefCell<Option<Value>> = const { RefCell::new(None) };
    /// How many `include` calls are active on this thread.
    static INCLUDE_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The snippets (by environment name) a tracked render has reached so
    /// far; `None` while the render on this thread is not tracked.
    static REACHED: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
    /// The work the render on this thread has done so far, across the
    /// separate minijinja states of its templates and `include` calls.
    static BUDGET: RefCell<Budget> = const { RefCell::new(Budget::new(RenderLimits {
        fuel: DEFAULT_FUEL,
        output_bytes: MAX_OUTPUT_BYTES,
        include_depth: MAX_INCLUDE_DEPTH,
    })) };
}

/// The accounting of one render's work. minijinja counts fuel per state, and
/// every template and every `include` call renders in a state of its own,
/// so the frame adds them up: the fuel of finished states, plus what each
/// caller suspended in an `include` had used when it called. Every switch
/// between states (an `include` call starting or returning, a template
/// starting) checks the total, and each state alone is capped by its own
/// fuel, so a render never does much more than twice its budget.
#[derive(Debug, Clone)]
struct Budget {
    limits: RenderLimits,
    /// Fuel of finished states, plus [`INCLUDE_COST`] per `include` call.
    spent: u64,
    /// Fuel the callers of the running `include` calls had used when they
    /// made them.
    suspended: u64,
    /// Bytes all states of the render have written.
    output: usize,
    /// What was exceeded, once something was: the error that follows is
    /// reported as exceeding the budget, whatever minijinja makes of it.
    exceeded: Option<String>,
}

impl Budget {
    const fn new(limits: RenderLimits) -> Budget {
        Budget {
            limits,
            spent: 0,
            suspended: 0,
            output: 0,
            exceeded: None,
        }
    }
}

/// Records that the render exceeded its budget (`what`, in the user's terms)
/// and returns the error that stops it.
fn budget_exceeded(what: String) -> minijinja::Error {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        if b.exceeded.is_none() {
            b.exceeded = Some(what);
        }
    });
    minijinja::Error::new(ErrorKind::InvalidOperation, "render budget exceeded")
}

/// Checks the budget at a switch between states; `current` is the fuel the
/// running state has used so far. Also fails once anything was exceeded, in
/// case minijinja carried on (`{% include … ignore missing %}`).
fn budget_check(current: u64) -> std::result::Result<(), minijinja::Error> {
    let (total, fuel, exceeded) = BUDGET.with(|b| {
        let b = b.borrow();
        (
            b.spent.saturating_add(b.suspended).saturating_add(current),
            b.limits.fuel,
            b.exceeded.is_some(),
        )
    });
    if exceeded || total > fuel {
        return Err(budget_exceeded(format!("more than {fuel} steps")));
    }
    Ok(())
}

/// The name the include-tag callback resolves to once the render is over
/// budget: no template has it, so minijinja stops.
const OVER_BUDGET_TEMPLATE: &str = "\u{0}render budget exceeded";

/// Charges `steps` for work minijinja does not count; false (with the
/// excess recorded) when that takes the render over its budget.
fn budget_charge(steps: u64) -> bool {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        b.spent = b.spent.saturating_add(steps);
        let fuel = b.limits.fuel;
        if b.spent.saturating_add(b.suspended) > fuel {
            if b.exceeded.is_none() {
                b.exceeded = Some(format!("more than {fuel} steps"));
            }
            return false;
        }
        true
    })
}

/// Adds the fuel of a state that finished.
fn budget_finished(used: u64) {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        b.spent = b.spent.saturating_add(used);
    });
}

/// Renders `template` into a buffer that counts against the output cap, and
/// returns the text with the fuel its state used.
fn render_counted(
    template: &minijinja::Template<'_, '_>,
    ctx: Value,
) -> std::result::Result<(String, u64), minijinja::Error> {
    let mut buffer = CappedBuffer(Vec::new());
    let captured = template.render_captured_to(ctx, &mut buffer)?;
    let used = captured.state().fuel_levels().map_or(0, |(used, _)| used);
    drop(captured);
    let text = String::from_utf8(buffer.0).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "rendered text is not UTF-8")
    })?;
    Ok((text, used))
}

/// A render's output buffer that refuses to grow past the render's output
/// cap, counting every state of the render together.
struct CappedBuffer(Vec<u8>);

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let over = BUDGET.with(|b| {
            let mut b = b.borrow_mut();
            b.output = b.output.saturating_add(buf.len());
            (b.output > b.limits.output_bytes).then_some(b.limits.output_bytes)
        });
        if let Some(cap) = over {
            budget_exceeded(format!("more than {} of output", format_bytes(cap)));
            return Err(std::io::Error::other("render budget exceeded"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `16 MiB`, `512 KiB` or `100 bytes`.
fn format_bytes(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// Why the render failed, when it failed by exceeding its budget: what the
/// frame recorded, or minijinja's own limits (a state's fuel, its recursion
/// limit for include tags, macros and recursive loops).
fn budget_reason(err: &minijinja::Error) -> Option<String> {
    if let Some(what) = BUDGET.with(|b| b.borrow().exceeded.clone()) {
        return Some(what);
    }
    let err = innermost_include(err);
    let what = match err.kind() {
        ErrorKind::OutOfFuel => {
            let fuel = BUDGET.with(|b| b.borrow().limits.fuel);
            format!("more than {fuel} steps")
        }
        ErrorKind::InvalidOperation if err.detail() == Some("recursion limit exceeded") => {
            "include tags, macros or recursive loops nested deeper than the recursion limit"
                .to_string()
        }
        _ => return None,
    };
    budget_exceeded(what.clone());
    Some(what)
}

/// Notes that the render on this thread reached snippet `name`, when it is
/// tracked.
fn record_snippet(name: &str) {
    REACHED.with(|r| {
        if let Some(reached) = r.borrow_mut().as_mut() {
            reached.insert(name.to_string());
        }
    });
}

/// Installs the root values for one render and restores the previous frame
/// (normally none) when dropped, also on error.
struct RenderFrame {
    previous_root: Option<Value>,
    previous_depth: usize,
    previous_reached: Option<BTreeSet<String>>,
    previous_budget: Budget,
}

impl RenderFrame {
    fn enter(root: Value, track: bool, limits: RenderLimits) -> RenderFrame {
        RenderFrame {
            previous_root: ROOT.with(|r| r.replace(Some(root))),
            previous_depth: INCLUDE_DEPTH.with(|d| d.replace(0)),
            previous_reached: REACHED.with(|r| r.replace(track.then(BTreeSet::new))),
            previous_budget: BUDGET.with(|b| b.replace(Budget::new(limits))),
        }
    }

    /// The snippets reached so far by this frame's render (empty when it is
    /// not tracked).
    fn reached(&self) -> BTreeSet<String> {
        REACHED.with(|r| r.borrow().clone().unwrap_or_default())
    }
}

impl Drop for RenderFrame {
    fn drop(&mut self) {
        let root = self.previous_root.take();
        ROOT.with(|r| *r.borrow_mut() = root);
        INCLUDE_DEPTH.with(|d| d.set(self.previous_depth));
        let reached = self.previous_reached.take();
        REACHED.with(|r| *r.borrow_mut() = reached);
        let budget = self.previous_budget.clone();
        BUDGET.with(|b| *b.borrow_mut() = budget);
    }
}

/// One level of `include` nesting; released when dropped.
struct IncludeLevel;

impl IncludeLevel {
    fn enter(name: &str) -> std::result::Result<IncludeLevel, minijinja::Error> {
        let max = BUDGET.with(|b| b.borrow().limits.include_depth);
        INCLUDE_DEPTH.with(|d| {
            let depth = d.get();
            if depth >= max {
                return Err(budget_exceeded(format!(
                    "include nesting deeper than {max} levels while including `{name}`"
                )));
            }
            d.set(depth + 1);
            Ok(IncludeLevel)
        })
    }
}

impl Drop for IncludeLevel {
    fn drop(&mut self) {
        INCLUDE_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// `include(name[, ctx])`: renders the snippet with basename `name` with the
/// root values, or with the mapping `ctx`, and returns its text.
fn include(
    state: &State,
    snippets: &BTreeMap<String, String>,
    name: &str,
    ctx: Option<Value>,
) -> std::result::Result<String, minijinja::Error> {
    let Some(template_name) = snippets.get(name) else {
        let known = if snippets.is_empty() {
            "no snippets were given".to_string()
        } else {
            let names: Vec<&str> = snippets.keys().map(String::as_str).collect();
            format!("known snippets: {}", names.join(", "))
        };
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("unknown snippet `{name}` ({known})"),
        ));
    };
    let ctx = match ctx {
        None => ROOT.with(|r| r.borrow().clone()).unwrap_or_else(empty_map),
        Some(ctx) => match ctx.kind() {
            ValueKind::Map => ctx,
            ValueKind::Undefined if state.undefined_behavior() == UndefinedBehavior::Strict => {
                return Err(minijinja::Error::from(ErrorKind::UndefinedError));
            }
            ValueKind::Undefined | ValueKind::None => empty_map(),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("include: the context must be a map, got a {other}"),
                ));
            }
        },
    };
    let _level = IncludeLevel::enter(name)?;
    record_snippet(template_name);
    // The caller is suspended while the snippet renders: its fuel so far
    // counts until it resumes, and then again when it finishes.
    let caller_used = state.fuel_levels().map_or(0, |(used, _)| used);
    budget_check(caller_used.saturating_add(INCLUDE_COST))?;
    budget_charge(INCLUDE_COST);
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        b.suspended = b.suspended.saturating_add(caller_used);
    });
    let rendered = state
        .env()
        .get_template(template_name)
        .and_then(|t| render_counted(&t, ctx.clone()));
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        b.suspended = b.suspended.saturating_sub(caller_used);
    });
    let (text, used) = rendered.map_err(|e| {
        // Resolve the failure now, while the snippet's context is at
        // hand; the outer template's error only adds where it was called.
        let failure = match find_include_failure(&e) {
            Some(inner) => {
                let mut failure = inner.clone();
                failure.included_from.push(location_of(&e, template_name));
                failure
            }
            None => {
                let described = describe(&e, Some(state.env()), &ctx, template_name);
                IncludeFailure {
                    location: described.location,
                    message: described.message,
                    included_from: described.included_from,
                }
            }
        };
        minijinja::Error::new(ErrorKind::InvalidOperation, "the included snippet failed")
            .with_source(failure)
    })?;
    budget_finished(used);
    budget_check(caller_used)?;
    Ok(text)
}

fn empty_map() -> Value {
    Value::from(indexmap::IndexMap::<Value, Value>::new())
}

/// A failure inside an included snippet, already described: where it
/// happened, what went wrong, and the `include` calls that led there,
/// innermost first.
#[derive(Debug, Clone)]
struct IncludeFailure {
    location: String,
    message: String,
    included_from: Vec<String>,
}

impl std::fmt::Display for IncludeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for IncludeFailure {}

fn find_include_failure(err: &minijinja::Error) -> Option<&IncludeFailure> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = current {
        if let Some(failure) = e.downcast_ref::<IncludeFailure>() {
            return Some(failure);
        }
        current = e.source();
    }
    None
}

// ---------------------------------------------------------------------------
// errors

/// How many `include` call sites an error lists before eliding the rest.
const MAX_LISTED_INCLUDES: usize = 4;

/// Turns a minijinja error from rendering template `name` with `root` into
/// an [`Error::Template`] located at the innermost template (a snippet, when
/// the failure happened in one).
fn template_error(
    err: &minijinja::Error,
    env: &Environment<'_>,
    root: &Value,
    name: &str,
) -> Error {
    let budget = budget_reason(err);
    let (location, message, chain) = match find_include_failure(err) {
        Some(failure) => {
            let mut chain = failure.included_from.clone();
            chain.push(location_of(err, name));
            (failure.location.clone(), failure.message.clone(), chain)
        }
        None => {
            let described = describe(err, Some(env), root, name);
            let mut chain = described.included_from;
            if !chain.is_empty() {
                chain.push(location_of(err, name));
            }
            (described.location, described.message, chain)
        }
    };
    let listed = if chain.len() > MAX_LISTED_INCLUDES {
        let skipped = chain.len() - MAX_LISTED_INCLUDES;
        let mut shown: Vec<String> = chain[..MAX_LISTED_INCLUDES - 1].to_vec();
        shown.push(format!("… {skipped} more"));
        shown.push(chain[chain.len() - 1].clone());
        shown
    } else {
        chain
    };
    let included_from = if listed.is_empty() {
        String::new()
    } else {
        format!(" (included from {})", listed.join(", "))
    };
    let message = match budget {
        Some(reason) => format!(
            "template `{name}` exceeded the render budget: {reason}; a loop or include that never ends?{included_from}"
        ),
        None => format!("{message}{included_from}"),
    };
    Error::Template { location, message }
}

/// `file:line` of an error, falling back to `fallback` for the file.
fn location_of(err: &minijinja::Error, fallback: &str) -> String {
    let name = err.name().unwrap_or(fallback);
    match err.line() {
        Some(line) => format!("{name}:{line}"),
        None => name.to_string(),
    }
}

/// `file:line:column` of byte `offset` in `source`, or `file:line` from the
/// error when the offset is unknown.
fn location_at(
    err: &minijinja::Error,
    fallback: &str,
    source: Option<&str>,
    offset: Option<usize>,
) -> String {
    let name = err.name().unwrap_or(fallback);
    match (source, offset) {
        (Some(source), Some(offset)) if source.is_char_boundary(offset) => {
            let before = &source[..offset];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            format!("{name}:{line}:{column}")
        }
        _ => location_of(err, fallback),
    }
}

/// The innermost minijinja error behind `{% include %}` tags, which wrap
/// a failure in an included template as "error in …".
fn innermost_include(err: &minijinja::Error) -> &minijinja::Error {
    let mut current = err;
    while current.kind() == ErrorKind::BadInclude {
        match std::error::Error::source(current).and_then(|s| s.downcast_ref::<minijinja::Error>())
        {
            Some(inner) => current = inner,
            None => break,
        }
    }
    current
}

/// Describes a minijinja error as `(location, message)` from its kind, its
/// detail and the template source at its span. minijinja's own rendering of
/// the error is not used: without debug info it cannot name the undefined
/// expression, and with debug info it prints values. The location is
/// `file:line:column` when the span is known; a failure inside an
/// `{% include %}` tag is located in the included file, and the message
/// says where it was included from.
fn describe(
    err: &minijinja::Error,
    env: Option<&Environment<'_>>,
    ctx: &Value,
    fallback: &str,
) -> Described {
    let outer = err;
    let err = innermost_include(outer);
    let source = err
        .name()
        .and_then(|n| env.and_then(|env| env.get_template(n).ok()))
        .map(|t| t.source().to_string());
    let mut offset = err.range().map(|r| r.start);
    let detail = err.detail();
    let message = if let Some(reason) = budget_reason(err) {
        format!("exceeded the render budget: {reason}")
    } else {
        match err.kind() {
            ErrorKind::UndefinedError => {
                let expr = match (&source, err.range()) {
                    (Some(source), Some(range)) => undefined_expression(source, range, ctx),
                    _ => None,
                };
                match expr {
                    Some((expr, at)) => {
                        offset = Some(at);
                        format!("undefined variable `{expr}`")
                    }
                    None => "undefined variable".to_string(),
                }
            }
            ErrorKind::UnknownFunction => {
                let name = detail
                    .and_then(|d| d.strip_suffix(" is unknown"))
                    .unwrap_or("?");
                format!("unknown function `{name}`{}", unknown_hint(name))
            }
            ErrorKind::UnknownFilter => {
                let name = detail
                    .and_then(|d| d.strip_prefix("filter "))
                    .and_then(|d| d.strip_suffix(" is unknown"))
                    .unwrap_or("?");
                format!("unknown filter `{name}`{}", unknown_hint(name))
            }
            ErrorKind::InvalidOperation => match detail {
                Some(detail) => detail.to_string(),
                None => err.kind().to_string(),
            },
            kind => match detail {
                Some(detail) => format!("{kind}: {detail}"),
                None => kind.to_string(),
            },
        }
    };
    let location = location_at(err, fallback, source.as_deref(), offset);
    // The include tags between the outer template and the failure,
    // innermost first, as for `include(...)` calls.
    let mut tags = Vec::new();
    let mut current = outer;
    while !std::ptr::eq(current, err) {
        tags.push(location_of(current, fallback));
        match std::error::Error::source(current).and_then(|s| s.downcast_ref::<minijinja::Error>())
        {
            Some(inner) => current = inner,
            None => break,
        }
    }
    tags.reverse();
    Described {
        location,
        message,
        included_from: tags,
    }
}

/// What [`describe`] makes of an error.
struct Described {
    location: String,
    message: String,
    /// The `{% include %}` tags that led to the failure, innermost first.
    included_from: Vec<String>,
}

/// The hint for an unknown function or filter: kOps' channel functions are
/// not available offline; Sprig names point at their kopsci spelling.
fn unknown_hint(name: &str) -> String {
    if name.starts_with("Channel") {
        " (kOps channel functions need the kops binary and network access: kopsci renders offline; set the version or image in your values instead)".to_string()
    } else if let Some(hint) = functions::sprig_hint(name) {
        format!(" (did you mean `{hint}`?)")
    } else {
        String::new()
    }
}

/// Names the undefined expression behind an error at `range` of `source`.
///
/// minijinja points at the instruction that failed, which is not always the
/// whole expression (`.foo.bar` of `spec.foo.bar`, the filter name of
/// `spec.foo | upper`). So the span is widened to the enclosing variable
/// path, or to the whole tag when it points at a filter; the variable paths
/// in that text are then resolved against `ctx` to find the first prefix
/// that is missing (`spec.foo` of `spec.foo.bar`). Paths whose first name is
/// not in `ctx` (loop variables, `set` variables) are named whole. Only
/// template text is returned, never a value.
fn undefined_expression(source: &str, range: Range<usize>, ctx: &Value) -> Option<(String, usize)> {
    source.get(range.clone())?;
    let bytes = source.as_bytes();
    let mut start = range.start;
    // Widen left over the rest of a variable path: `spec` of `.foo.bar`.
    while start > 0 {
        let c = bytes[start - 1];
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            start -= 1;
        } else if c == b']' {
            match source[..start - 1].rfind('[') {
                Some(open) => start = open,
                None => break,
            }
        } else {
            break;
        }
    }
    // A filter or test name: take the whole tag up to it.
    let before = source[..start].trim_end();
    let after_is = match last_word(before) {
        "is" => true,
        "not" => last_word(before[..before.len() - 3].trim_end()) == "is",
        _ => false,
    };
    if before.ends_with('|') || after_is {
        let open = source[..start]
            .rfind("{{")
            .into_iter()
            .chain(source[..start].rfind("{%"))
            .max();
        if let Some(open) = open {
            start = open + 2;
        }
    }
    let text = source.get(start..range.end)?;
    let mut unknown_head: Option<(String, usize)> = None;
    for path in variable_paths(text) {
        match resolve(ctx, &path.segments) {
            Resolution::Defined => {}
            Resolution::MissingAt(n) => return Some((path.text(text, n), start + path.start)),
            Resolution::HeadNotInContext => {
                if unknown_head.is_none() {
                    unknown_head = Some((path.text(text, path.segments.len()), start + path.start));
                }
            }
        }
    }
    unknown_head.or_else(|| {
        let trimmed = text.trim().trim_start_matches(['{', '%', '-', '+']).trim();
        let at = start + text.find(trimmed).unwrap_or(0);
        (!trimmed.is_empty()).then(|| (trimmed.to_string(), at))
    })
}

/// The identifier `text` ends with (empty when it ends otherwise).
fn last_word(text: &str) -> &str {
    let start = text
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    &text[start..]
}

/// One segment of a variable path.
#[derive(Debug, PartialEq)]
enum Segment {
    /// `name` or `.name`.
    Name(String),
    /// `[0]` or `.0`.
    Index(i64),
    /// `["key"]`.
    Key(String),
}

/// A variable path found in template text: its segments and where each
/// ends in the text, so a prefix can be quoted as written.
#[derive(Debug)]
struct VariablePath {
    start: usize,
    segments: Vec<Segment>,
    ends: Vec<usize>,
}

impl VariablePath {
    /// The text of the first `segments` segments (at least one).
    fn text(&self, source: &str, segments: usize) -> String {
        let last = segments.clamp(1, self.ends.len().max(1)) - 1;
        let end = self.ends.get(last).copied().unwrap_or(self.start);
        source.get(self.start..end).unwrap_or_default().to_string()
    }
}

enum Resolution {
    Defined,
    /// The first `n` segments name a missing value.
    MissingAt(usize),
    HeadNotInContext,
}

fn resolve(ctx: &Value, segments: &[Segment]) -> Resolution {
    let mut current = match segments.first() {
        Some(Segment::Name(head)) => match ctx.get_attr(head) {
            Ok(v) if !v.is_undefined() => v,
            _ => return Resolution::HeadNotInContext,
        },
        _ => return Resolution::HeadNotInContext,
    };
    for (i, segment) in segments.iter().enumerate().skip(1) {
        let next = match segment {
            Segment::Name(name) => current.get_attr(name),
            Segment::Index(idx) => current.get_item(&Value::from(*idx)),
            Segment::Key(key) => current.get_item(&Value::from(key.as_str())),
        };
        match next {
            Ok(v) if !v.is_undefined() => current = v,
            _ => return Resolution::MissingAt(i + 1),
        }
    }
    Resolution::Defined
}

/// Words that are never variables in an expression.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "endif",
    "for",
    "endfor",
    "set",
    "endset",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "recursive",
    "with",
    "without",
    "context",
    "import",
    "from",
    "as",
    "include",
    "extends",
    "block",
    "macro",
    "call",
    "filter",
];

/// Finds the variable paths (`a`, `a.b[0]["c"]`) in a piece of template
/// text, skipping string literals, keywords, filter and test names, function
/// and method calls and keyword-argument names.
fn variable_paths(text: &str) -> Vec<VariablePath> {
    let bytes = text.as_bytes();
    let mut paths = Vec::new();
    let mut i = 0;
    // The previous significant token: a punctuation byte, or `b'w'` for a
    // word, with the word itself kept for `is` / `not`.
    let mut prev_punct: u8 = 0;
    let mut prev_word = String::new();
    let mut after_is = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' {
            i = skip_string(bytes, i);
            prev_punct = b's';
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            prev_punct = b'n';
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            if !c.is_ascii_whitespace() {
                prev_punct = c;
                prev_word.clear();
            }
            i += 1;
            continue;
        }
        let start = i;
        let word_end = scan_word(bytes, i);
        let word = &text[start..word_end];
        let mut path = VariablePath {
            start,
            segments: vec![Segment::Name(word.to_string())],
            ends: vec![word_end],
        };
        i = word_end;
        loop {
            if i + 1 < bytes.len() && bytes[i] == b'.' {
                let next = bytes[i + 1];
                if next.is_ascii_alphabetic() || next == b'_' {
                    let end = scan_word(bytes, i + 1);
                    path.segments
                        .push(Segment::Name(text[i + 1..end].to_string()));
                    path.ends.push(end);
                    i = end;
                    continue;
                }
                if next.is_ascii_digit() {
                    let end = scan_digits(bytes, i + 1);
                    match text[i + 1..end].parse() {
                        Ok(n) => path.segments.push(Segment::Index(n)),
                        Err(_) => break,
                    }
                    path.ends.push(end);
                    i = end;
                    continue;
                }
                break;
            }
            if bytes.get(i) == Some(&b'[')
                && let Some((segment, end)) = subscript(text, i)
            {
                path.segments.push(segment);
                path.ends.push(end);
                i = end;
                continue;
            }
            break;
        }
        let next = text[i..].trim_start();
        let is_call = next.starts_with('(');
        let is_kwarg = next.starts_with('=') && !next.starts_with("==");
        let is_filter_or_test = prev_punct == b'|' || after_is;
        let is_attribute_of_something_else = prev_punct == b'.' || prev_punct == b')';
        let single_word = path.segments.len() == 1;
        let is_keyword = single_word && KEYWORDS.contains(&word);
        after_is = matches!(word, "is") || (word == "not" && prev_word == "is");
        if !(is_call
            || is_kwarg
            || is_filter_or_test
            || is_attribute_of_something_else
            || is_keyword)
        {
            paths.push(path);
        }
        prev_punct = b'w';
        prev_word = word.to_string();
    }
    paths
}

fn scan_word(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    i
}

fn scan_digits(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Skips a string literal starting at `i` (a quote); returns the index
/// after its closing quote.
fn skip_string(bytes: &[u8], i: usize) -> usize {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

/// Parses a literal subscript `[0]`, `["key"]` or `['key']` at `i`.
fn subscript(text: &str, i: usize) -> Option<(Segment, usize)> {
    let bytes = text.as_bytes();
    let inner_start = i + 1;
    let first = *bytes.get(inner_start)?;
    if first == b'\'' || first == b'"' {
        let close = skip_string(bytes, inner_start);
        if bytes.get(close) != Some(&b']') || close < inner_start + 2 {
            return None;
        }
        let key = text.get(inner_start + 1..close - 1)?;
        if key.contains('\\') {
            return None;
        }
        return Some((Segment::Key(key.to_string()), close + 1));
    }
    let end = scan_digits(bytes, inner_start);
    if end > inner_start && bytes.get(end) == Some(&b']') {
        let n = text[inner_start..end].parse().ok()?;
        return Some((Segment::Index(n), end + 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A scratch fleet directory with `templates/` and `snippets/`.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn file(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn name(&self, rel: &str) -> String {
            self.path(rel).display().to_string()
        }
    }

    fn values(json: serde_json::Value) -> Map {
        match json {
            serde_json::Value::Object(map) => map,
            _ => panic!("values must be a map"),
        }
    }

    const STRICT: RenderOptions = RenderOptions {
        fail_on_missing: true,
        format_yaml: false,
    };
    const LENIENT: RenderOptions = RenderOptions {
        fail_on_missing: false,
        format_yaml: false,
    };

    /// Renders one template (with the fixture's snippets dir when present).
    fn render_one(
        fx: &Fixture,
        template: &str,
        vals: serde_json::Value,
        opts: &RenderOptions,
    ) -> Result<String> {
        let t = fx.file("templates/t.yaml", template);
        let snippets: Vec<PathBuf> = if fx.path("snippets").exists() {
            vec![fx.path("snippets")]
        } else {
            vec![]
        };
        TemplateSet::load(&[t], &snippets)?.render(&values(vals), opts)
    }

    /// Renders one template with no values, failing on missing ones.
    fn render_strict(fx: &Fixture, template: &str) -> Result<String> {
        render_one(fx, template, serde_json::json!({}), &STRICT)
    }

    fn template_err(result: Result<String>) -> (String, String) {
        match result {
            Err(Error::Template { location, message }) => (location, message),
            other => panic!("expected a template error, got {other:?}"),
        }
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The process umask, from procfs (reading it with umask(2) would change
    /// it for a moment under the other tests' feet).
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn output_keeps_an_existing_files_mode_and_new_files_follow_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let fx = Fixture::new();
        for existing_mode in [0o644, 0o640, 0o600, 0o664] {
            let path = fx.file("out.yaml", "old\n");
            fs::set_permissions(&path, fs::Permissions::from_mode(existing_mode)).unwrap();
            write_output(&path, b"new\n").unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
            assert_eq!(mode(&path), existing_mode, "{existing_mode:o}");
        }
        let new = fx.path("new.yaml");
        write_output(&new, b"a: 1\n").unwrap();
        assert_eq!(mode(&new), 0o666 & !umask());
        let leftovers: Vec<_> = fs::read_dir(fx.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".kopsci"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn documents_are_split_joined_and_blank_ones_skipped() {
        let fx = Fixture::new();
        let a = fx.file(
            "templates/a.yaml",
            "---\nkind: A\n---\n\n  \n---\nkind: B\n",
        );
        let b = fx.file("templates/b.yaml", "kind: C\n---\n");
        let set = TemplateSet::load(&[a, b], &[]).unwrap();
        let out = set.render(&Map::new(), &STRICT).unwrap();
        assert_eq!(out, "kind: A\n---\nkind: B\n---\nkind: C\n");
    }

    #[test]
    fn directories_render_in_lexical_order_skipping_hidden_files() {
        let fx = Fixture::new();
        fx.file("templates/b/ig.yaml", "kind: IG\n");
        fx.file("templates/a-cluster.yaml", "kind: Cluster\n");
        fx.file("templates/.swap.yaml", "{{ broken\n");
        let set = TemplateSet::load(&[fx.path("templates")], &[]).unwrap();
        assert_eq!(
            set.template_paths(),
            [
                fx.path("templates/a-cluster.yaml"),
                fx.path("templates/b/ig.yaml")
            ]
        );
        let out = set.render(&Map::new(), &STRICT).unwrap();
        assert_eq!(out, "kind: Cluster\n---\nkind: IG\n");
    }

    #[test]
    fn trailing_newline_is_kept() {
        let fx = Fixture::new();
        let out = render_one(&fx, "a: {{ x }}\n", serde_json::json!({"x": 1}), &STRICT).unwrap();
        assert_eq!(out, "a: 1\n");
        let out = render_one(&fx, "a: {{ x }}", serde_json::json!({"x": 1}), &STRICT).unwrap();
        assert_eq!(out, "a: 1");
    }

    #[test]
    fn a_document_without_final_newline_is_not_glued_to_the_separator() {
        let fx = Fixture::new();
        let a = fx.file("templates/a.yaml", "a: 1");
        let b = fx.file("templates/b.yaml", "b: 2\n");
        let out = TemplateSet::load(&[a, b], &[])
            .unwrap()
            .render(&Map::new(), &STRICT)
            .unwrap();
        assert_eq!(out, "a: 1\n---\nb: 2\n");
    }

    #[test]
    fn yaml_templates_are_not_auto_escaped() {
        let fx = Fixture::new();
        let out = render_one(
            &fx,
            "a: {{ s }}\n",
            serde_json::json!({"s": "x<y & \"z\""}),
            &STRICT,
        )
        .unwrap();
        assert_eq!(out, "a: x<y & \"z\"\n");
    }

    #[test]
    fn values_keep_their_order_and_types() {
        let fx = Fixture::new();
        let out = render_one(
            &fx,
            "{% for k, v in m | items %}{{ k }}={{ v }} {% endfor %}\n",
            serde_json::json!({"m": {"z": 1, "a": true, "m": "s"}}),
            &STRICT,
        )
        .unwrap();
        assert_eq!(out, "z=1 a=true m=s \n");
    }

    #[test]
    fn snippets_by_basename_with_and_without_context() {
        let fx = Fixture::new();
        fx.file(
            "snippets/a/b/docker.options",
            "logDriver: {{ log }}\nbridge: none\n",
        );
        fx.file("snippets/unit", "name: {{ name }}\n");
        let template = "\
spec:
  docker:
    {{ include(\"docker.options\") | indent(4) }}
  unit:{{ include(\"unit\", {\"name\": \"kubelet\"}) | nindent(4) }}
  again: {{ include(\"unit\", {\"name\": \"x\"}) | trim | quote }}
";
        let out = render_one(
            &fx,
            template,
            serde_json::json!({"log": "json-file"}),
            &STRICT,
        )
        .unwrap();
        assert_eq!(
            out,
            "spec:\n  docker:\n    logDriver: json-file\n    bridge: none\n  unit:\n    name: kubelet\n\n  again: \"name: x\"\n"
        );
    }

    #[test]
    fn include_tag_and_import_find_snippets_by_basename() {
        let fx = Fixture::new();
        fx.file(
            "snippets/macros.j2",
            "{% macro label(k, v) %}{{ k }}: {{ v }}{% endmacro %}",
        );
        fx.file("snippets/deep/part.yaml", "part: {{ x }}\n");
        let template =
            "{% import \"macros.j2\" as m %}{{ m.label(\"a\", x) }}\n{% include \"part.yaml\" %}";
        let out = render_one(&fx, template, serde_json::json!({"x": 7}), &STRICT).unwrap();
        assert_eq!(out, "a: 7\npart: 7\n");
    }

    #[test]
    fn duplicate_snippet_basenames_are_an_error_naming_both() {
        let fx = Fixture::new();
        let first = fx.file("snippets/a/docker.options", "x\n");
        let second = fx.file("snippets/b/docker.options", "y\n");
        let t = fx.file("templates/t.yaml", "a: 1\n");
        let err = TemplateSet::load(&[t], &[fx.path("snippets")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`docker.options` is defined twice"), "{text}");
        assert!(text.contains(&first.display().to_string()), "{text}");
        assert!(text.contains(&second.display().to_string()), "{text}");
    }

    #[test]
    fn the_same_snippet_given_twice_is_not_a_duplicate() {
        let fx = Fixture::new();
        let file = fx.file("snippets/unit", "u\n");
        let t = fx.file("templates/t.yaml", "a: {{ include('unit') | trim }}\n");
        let set = TemplateSet::load(&[t], &[fx.path("snippets"), file.clone()]).unwrap();
        assert_eq!(set.snippet_paths(), [file]);
        assert_eq!(set.render(&Map::new(), &STRICT).unwrap(), "a: u\n");
    }

    #[test]
    fn unknown_snippet_lists_the_known_ones() {
        let fx = Fixture::new();
        fx.file("snippets/b", "b\n");
        fx.file("snippets/a", "a\n");
        let (location, message) =
            template_err(render_strict(&fx, "x: 1\ny: {{ include('nope') }}\n"));
        assert_eq!(location, format!("{}:2:7", fx.name("templates/t.yaml")));
        assert_eq!(message, "unknown snippet `nope` (known snippets: a, b)");
    }

    #[test]
    fn include_recursion_is_limited() {
        let fx = Fixture::new();
        fx.file("snippets/loop", "x{{ include('loop') }}");
        let (location, message) = template_err(render_strict(&fx, "a: {{ include('loop') }}\n"));
        assert_eq!(location, format!("{}:1:5", fx.name("snippets/loop")));
        assert!(
            message.starts_with(&format!(
                "template `{}` exceeded the render budget: include nesting deeper than 64 levels while including `loop`; a loop or include that never ends? (included from ",
                fx.name("templates/t.yaml")
            )),
            "{message}"
        );
        assert!(message.contains("more"), "{message}");
        assert!(
            message.ends_with(&format!("{}:1)", fx.name("templates/t.yaml"))),
            "{message}"
        );
        // The depth counter is released after a failed render.
        fx.file("snippets/ok", "fine");
        let out = render_strict(&fx, "a: {{ include('ok') }}\n").unwrap();
        assert_eq!(out, "a: fine\n");
    }

    /// Asserts a render budget error naming the template `templates/t.yaml`
    /// and what was exceeded.
    fn assert_over_budget(fx: &Fixture, result: Result<String>, what: &str) {
        let (_, message) = template_err(result);
        let head = format!(
            "template `{}` exceeded the render budget: {what}",
            fx.name("templates/t.yaml")
        );
        assert!(message.starts_with(&head), "{message}");
        assert!(
            message.contains("; a loop or include that never ends?"),
            "{message}"
        );
    }

    #[test]
    fn exponential_include_nesting_runs_out_of_budget() {
        // Each level includes the next twice: 2^40 renders, each cheap.
        let fx = Fixture::new();
        fx.file("snippets/s40", "x");
        let steps = format!("more than {DEFAULT_FUEL} steps");
        for (include_next, template) in [
            ("{{ include('NEXT') }}", "a: {{ include('s0') }}\n"),
            // The same with include tags, which share one minijinja state.
            ("{% include 'NEXT' %}", "a: {% include 's0' %}\n"),
            // `ignore missing` does not turn the budget into a silent skip.
            (
                "{% include 'NEXT' ignore missing %}",
                "a: {% include 's0' %}\n",
            ),
        ] {
            for level in 0..40 {
                let call = include_next.replace("NEXT", &format!("s{}", level + 1));
                fx.file(&format!("snippets/s{level}"), &call.repeat(2));
            }
            let result = render_strict(&fx, template);
            assert_over_budget(&fx, result, &steps);
        }
    }

    #[test]
    fn a_huge_nested_loop_runs_out_of_budget() {
        let fx = Fixture::new();
        let t =
            "a: {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n";
        let result = render_strict(&fx, t);
        assert_over_budget(&fx, result, &format!("more than {DEFAULT_FUEL} steps"));
        // In a snippet too (with a smaller budget, to keep the test quick):
        // the error is located in the snippet and names the template that
        // included it.
        fx.file(
            "snippets/spin",
            "{% for i in range(100000) %}\n{% for j in range(100000) %}{% endfor %}{% endfor %}",
        );
        let t = fx.file("templates/t.yaml", "a: {{ include('spin') }}\n");
        let set = TemplateSet::load(&[t], &[fx.path("snippets")])
            .unwrap()
            .with_limits(RenderLimits {
                fuel: 100_000,
                ..RenderLimits::default()
            });
        let result = set.render(&Map::new(), &STRICT);
        let (location, _) = template_err(set.render(&Map::new(), &STRICT));
        assert_eq!(location, format!("{}:2", fx.name("snippets/spin")));
        assert_over_budget(&fx, result, "more than 100000 steps");
    }

    #[test]
    fn self_including_snippets_run_out_of_budget() {
        let fx = Fixture::new();
        fx.file("snippets/me", "x{{ include('me') }}");
        let result = render_strict(&fx, "a: {{ include('me') }}\n");
        assert_over_budget(
            &fx,
            result,
            "include nesting deeper than 64 levels while including `me`",
        );
        // Two snippets including each other, with the tag.
        fx.file("snippets/ping", "{% include 'pong' %}");
        fx.file("snippets/pong", "{% include 'ping' %}");
        let result = render_strict(&fx, "a: {% include 'ping' %}\n");
        assert_over_budget(
            &fx,
            result,
            "include tags, macros or recursive loops nested",
        );
        // A macro calling itself.
        let result = render_strict(
            &fx,
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}a: {{ f(0) }}\n",
        );
        assert_over_budget(
            &fx,
            result,
            "include tags, macros or recursive loops nested",
        );
    }

    #[test]
    fn huge_output_is_capped() {
        let fx = Fixture::new();
        let vals = serde_json::json!({"big": "x".repeat(1024)});
        let t = "a: {% for i in range(100000) %}{{ big }}{% endfor %}\n";
        let result = render_one(&fx, t, vals.clone(), &STRICT);
        assert_over_budget(&fx, result, "more than 16 MiB of output");
        // Text a snippet renders counts too, even when it is thrown away.
        fx.file(
            "snippets/big",
            "{% for i in range(100000) %}{{ big }}{% endfor %}",
        );
        let result = render_one(&fx, "{% set x = include('big') %}a: 1\n", vals, &STRICT);
        assert_over_budget(&fx, result, "more than 16 MiB of output");
    }

    #[test]
    fn limits_are_per_render_and_configurable() {
        let fx = Fixture::new();
        let t = fx.file(
            "templates/t.yaml",
            "a: {% for i in range(n) %}x{% endfor %}\n",
        );
        let set = TemplateSet::load(&[t], &[])
            .unwrap()
            .with_limits(RenderLimits {
                fuel: 2_000,
                ..RenderLimits::default()
            });
        // A render well inside the budget, many times over: nothing carries
        // over from one render to the next.
        for _ in 0..20 {
            let out = set
                .render(&values(serde_json::json!({"n": 100})), &STRICT)
                .unwrap();
            assert_eq!(out, format!("a: {}\n", "x".repeat(100)));
        }
        let result = set.render(&values(serde_json::json!({"n": 5000})), &STRICT);
        assert_over_budget(&fx, result, "more than 2000 steps");
        let small = TemplateSet::load(&[fx.path("templates/t.yaml")], &[])
            .unwrap()
            .with_limits(RenderLimits {
                output_bytes: 50,
                ..RenderLimits::default()
            });
        let result = small.render(&values(serde_json::json!({"n": 100})), &STRICT);
        assert_over_budget(&fx, result, "more than 50 bytes of output");
    }

    #[test]
    fn strict_fails_on_missing_and_lenient_prints_nothing() {
        let fx = Fixture::new();
        let t = "a: \"{{ missing }}\"\n";
        let (location, message) = template_err(render_strict(&fx, t));
        assert_eq!(location, format!("{}:1:8", fx.name("templates/t.yaml")));
        assert_eq!(message, "undefined variable `missing`");
        let out = render_one(&fx, t, serde_json::json!({}), &LENIENT).unwrap();
        assert_eq!(out, "a: \"\"\n");
    }

    #[test]
    fn default_is_defined_and_required_work_in_strict_mode() {
        let fx = Fixture::new();
        let t = "\
a: {{ missing | default('d') }}
b: {{ spec.missing | default('e') }}
c: {{ missing is defined }}
d: {{ spec is defined }}
e: {{ spec.x | required('x is needed') }}
{% if spec.missing is defined %}f: no{% endif %}
";
        let out = render_one(&fx, t, serde_json::json!({"spec": {"x": 1}}), &STRICT).unwrap();
        assert_eq!(out, "a: d\nb: e\nc: false\nd: true\ne: 1\n\n");
        let (location, message) = template_err(render_strict(
            &fx,
            "a: 1\nb: {{ foo | required(\"foo is needed\") }}\n",
        ));
        // The column of the failing filter.
        assert_eq!(location, format!("{}:2:13", fx.name("templates/t.yaml")));
        assert_eq!(message, "foo is needed");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let fx = Fixture::new();
        let t = fx.file("templates/t.yaml", "a: 1\nb: {{ x + }}\n");
        let (location, message) = template_err(TemplateSet::load(&[t], &[]).map(|_| String::new()));
        assert_eq!(location, format!("{}:2:11", fx.name("templates/t.yaml")));
        assert!(message.starts_with("syntax error: "), "{message}");
        // Snippets are parsed up front too.
        fx.file("snippets/bad", "{% if %}");
        let t = fx.file("templates/ok.yaml", "a: 1\n");
        let (location, _) =
            template_err(TemplateSet::load(&[t], &[fx.path("snippets")]).map(|_| String::new()));
        assert_eq!(location, format!("{}:1:7", fx.name("snippets/bad")));
    }

    #[test]
    fn undefined_variables_are_named() {
        let fx = Fixture::new();
        let vals =
            serde_json::json!({"spec": {"s": "x", "list": [1, {"k": 2}]}, "igs": [{"name": "a"}]});
        let cases = [
            ("{{ spec.foo }}", "spec.foo"),
            ("{{ spec.foo.bar }}", "spec.foo"),
            ("{{ spec.foo.bar | default('x') }}", "spec.foo"),
            ("{{ spec.foo | upper }}", "spec.foo"),
            ("{{ spec.s ~ spec.foo }}", "spec.foo"),
            ("{{ spec['foo'] }}", "spec['foo']"),
            ("{{ spec.list[5] }}", "spec.list[5]"),
            (
                "{{ spec.list[1].k }}{{ spec.list[1].nope }}",
                "spec.list[1].nope",
            ),
            ("{% if spec.foo %}x{% endif %}", "spec.foo"),
            ("{% for x in spec.foo %}{% endfor %}", "spec.foo"),
            ("{% for ig in igs %}{{ ig.size }}{% endfor %}", "ig.size"),
            ("{% set y = spec.foo %}{{ y }}", "y"),
            ("{{ foo.bar }}", "foo.bar"),
            ("{{ missing | b64encode }}", "missing"),
            ("{{ spec.foo | toyaml | nindent(2) }}", "spec.foo"),
            ("{{ include('unit', missing) }}", "missing"),
        ];
        fx.file("snippets/unit", "u");
        for (template, expr) in cases {
            let (location, message) = template_err(render_one(
                &fx,
                &format!("a: 1\nb: {template}\n"),
                vals.clone(),
                &STRICT,
            ));
            // The column is where the undefined expression starts (line 2
            // starts with `b: `).
            let column = 4 + template.rfind(expr).unwrap();
            assert_eq!(
                location,
                format!("{}:2:{column}", fx.name("templates/t.yaml")),
                "{template}"
            );
            assert_eq!(
                message,
                format!("undefined variable `{expr}`"),
                "{template}"
            );
        }
    }

    /// Every filter, test and function a template can call, with `nope`
    /// (never defined) as an argument; and the sinks that print or serialise
    /// a whole list or map with `nope` inside.
    const UNDEFINED_USES: &[&str] = &[
        // minijinja's filters
        "{{ nope | safe }}",
        "{{ nope | escape }}",
        "{{ nope | e }}",
        "{{ nope | lower }}",
        "{{ nope | upper }}",
        "{{ nope | title }}",
        "{{ nope | capitalize }}",
        "{{ nope | replace('a', 'b') }}",
        "{{ 'a' | replace('a', nope) }}",
        "{{ nope | length }}",
        "{{ nope | count }}",
        "{{ nope | dictsort }}",
        "{{ nope | items }}",
        "{{ nope | reverse }}",
        "{{ nope | trim }}",
        "{{ nope | join(',') }}",
        "{{ list | join(nope) }}",
        "{{ [nope, 'a'] | join(',') }}",
        "{{ nope | split }}",
        "{{ nope | lines }}",
        "{{ nope | round }}",
        "{{ nope | abs }}",
        "{{ nope | int }}",
        "{{ nope | float }}",
        "{{ nope | attr('x') }}",
        "{{ nope | first }}",
        "{{ nope | last }}",
        "{{ nope | min }}",
        "{{ nope | max }}",
        "{{ nope | sort }}",
        "{{ nope | list }}",
        "{{ nope | string }}",
        "{{ [nope] | string }}",
        "{{ nope | bool }}",
        "{{ nope | batch(2) }}",
        "{{ nope | slice(2) }}",
        "{{ nope | sum }}",
        "{{ nope | indent(2) }}",
        "{{ nope | select }}",
        "{{ list | select('eq', nope) | list }}",
        "{{ list | select('==', nope) | list }}",
        "{{ nope | reject }}",
        "{{ nope | selectattr('x') }}",
        "{{ nope | rejectattr('x') }}",
        "{{ nope | map('upper') }}",
        "{{ list | map('int', nope) | list }}",
        "{{ nope | groupby('x') }}",
        "{{ nope | unique }}",
        "{{ nope | chain(list) }}",
        "{{ nope | zip(list) }}",
        "{{ nope | pprint }}",
        "{{ [nope] | pprint }}",
        "{{ nope | format }}",
        "{{ '%s' | format(nope) }}",
        "{{ nope | tojson }}",
        "{{ [nope] | tojson }}",
        "{{ {'k': [nope]} | tojson }}",
        // kopsci's filters
        "{{ nope | nindent(2) }}",
        "{{ nope | toyaml }}",
        "{{ [nope] | toyaml }}",
        "{{ nope | b64encode }}",
        "{{ nope | b64decode }}",
        "{{ nope | quote }}",
        "{{ nope | sha256sum }}",
        "{{ nope | semver_compare('>1') }}",
        // tests
        "{{ nope is none }}",
        "{{ nope is safe }}",
        "{{ nope is escaped }}",
        "{{ nope is boolean }}",
        "{{ nope is odd }}",
        "{{ nope is even }}",
        "{{ nope is divisibleby(2) }}",
        "{{ nope is number }}",
        "{{ nope is integer }}",
        "{{ nope is int }}",
        "{{ nope is float }}",
        "{{ nope is string }}",
        "{{ nope is sequence }}",
        "{{ nope is iterable }}",
        "{{ nope is mapping }}",
        "{{ nope is startingwith('a') }}",
        "{{ nope is endingwith('a') }}",
        "{{ nope is lower }}",
        "{{ nope is upper }}",
        "{{ nope is sameas(1) }}",
        "{{ nope is eq(1) }}",
        "{{ 1 is eq(nope) }}",
        "{{ nope is equalto(1) }}",
        "{{ nope is ne(1) }}",
        "{{ nope is not ne(1) }}",
        "{{ nope is lt(1) }}",
        "{{ nope is lessthan(1) }}",
        "{{ nope is le(1) }}",
        "{{ nope is gt(1) }}",
        "{{ nope is greaterthan(1) }}",
        "{{ nope is ge(1) }}",
        "{{ nope is in(list) }}",
        "{{ nope is true }}",
        "{{ nope is false }}",
        "{{ nope is filter }}",
        "{{ nope is test }}",
        // functions
        "{{ range(nope) }}",
        "{{ dict(nope) }}",
        "{{ dict(a=nope) }}",
        "{{ namespace(a=nope) }}",
        "{{ debug(nope) }}",
        "{{ toyaml(nope) }}",
        "{{ tojson(nope) }}",
        "{{ tojson([nope]) }}",
        "{{ b64encode(nope) }}",
        "{{ b64decode(nope) }}",
        "{{ quote(nope) }}",
        "{{ sha256sum(nope) }}",
        "{{ semver_compare(nope, '>1') }}",
        "{{ semver_compare('1.0.0', nope) }}",
        "{{ include(nope) }}",
        "{{ include('unit', nope) }}",
        // printing a list or map
        "{{ [nope] }}",
        "{{ {'k': nope} }}",
        "{{ [1, [nope]] }}",
    ];

    #[test]
    fn a_typo_in_a_values_key_fails_in_every_filter_test_and_function() {
        let fx = Fixture::new();
        fx.file("snippets/unit", "u");
        let vals = serde_json::json!({"list": [1, 2]});
        for use_ in UNDEFINED_USES {
            let (location, message) = template_err(render_one(
                &fx,
                &format!("a: {use_}\n"),
                vals.clone(),
                &STRICT,
            ));
            assert_eq!(message, "undefined variable `nope`", "{use_}");
            let column = 4 + use_.find("nope").unwrap();
            assert_eq!(
                location,
                format!("{}:1:{column}", fx.name("templates/t.yaml")),
                "{use_}"
            );
        }
        // A loop variable bound to an undefined value is named as used.
        let (_, message) = template_err(render_one(
            &fx,
            "a: {% for x in [nope] %}{{ x | tojson }}{% endfor %}\n",
            vals.clone(),
            &STRICT,
        ));
        assert_eq!(message, "undefined variable `x`");
    }

    #[test]
    fn every_filter_and_function_is_in_the_undefined_table() {
        let fx = Fixture::new();
        fx.file("snippets/unit", "u");
        let t = fx.file("templates/t.yaml", "a: 1\n");
        let set = TemplateSet::load(&[t], &[fx.path("snippets")]).unwrap();
        let covered = |name: &str| {
            UNDEFINED_USES.iter().any(|u| {
                u.contains(&format!("| {name}"))
                    || u.contains(&format!("is {name}"))
                    || u.contains(&format!("{name}("))
                    || u.contains(&format!("('{name}'"))
            })
        };
        let mut names: Vec<&str> = functions::builtin_filters()
            .iter()
            .map(|(n, _)| *n)
            .chain(functions::builtin_tests().iter().map(|(n, _)| *n))
            .chain(
                functions::OWN_FILTERS
                    .iter()
                    .copied()
                    .filter(|n| *n != "required"),
            )
            .collect();
        // The `go_*` and `sprig_*` helpers only appear in templates
        // `kopsci migrate` wrote; they follow Go's own rules for missing
        // keys (`index` of a missing key is nil), which render/sprig.rs
        // tests.
        let globals: Vec<String> = set
            .strict
            .globals()
            .map(|(n, _)| n.to_string())
            .filter(|n| !n.starts_with("go_") && !n.starts_with("sprig_"))
            .collect();
        names.extend(globals.iter().map(String::as_str));
        for name in names {
            if matches!(name, "!=" | "<" | "<=" | ">" | ">=") {
                continue; // the same tests as `ne`, `lt`, … under operator names
            }
            assert!(covered(name), "`{name}` has no case in UNDEFINED_USES");
        }
        // The lists name what the environment really has.
        for name in functions::OWN_FILTERS {
            let out = set
                .strict
                .render_str(&format!("{{{{ '{name}' is filter }}}}"), ())
                .unwrap();
            assert_eq!(out, "true", "{name}");
        }
    }

    #[test]
    fn lenient_mode_keeps_rendering_undefined_values_as_before() {
        let fx = Fixture::new();
        let vals = serde_json::json!({"list": [1, 2]});
        for (template, want) in [
            ("a: {{ nope | tojson }}\n", "a: null\n"),
            ("a: '{{ nope | join(',') }}'\n", "a: ''\n"),
            ("a: {{ [nope] | tojson }}\n", "a: [null]\n"),
            ("a: {{ [nope] }}\n", "a: [null]\n"),
            ("a: {{ nope is none }}\n", "a: false\n"),
            ("a: '{{ nope | escape }}'\n", "a: ''\n"),
            ("a: {{ nope | toyaml }}\n", "a: null\n"),
        ] {
            let out = render_one(&fx, template, vals.clone(), &LENIENT).unwrap();
            assert_eq!(out, want, "{template}");
        }
    }

    #[test]
    fn errors_inside_snippets_name_the_snippet_and_the_call_site() {
        let fx = Fixture::new();
        fx.file("snippets/inner", "ok\nv: {{ spec.nope }}\n");
        fx.file("snippets/outer", "o\n{{ include('inner') }}");
        fx.file("snippets/ctx", "{{ name }} {{ other }}");
        let vals = serde_json::json!({"spec": {}});
        let (location, message) = template_err(render_one(
            &fx,
            "a: 1\nb: {{ include('outer') }}\n",
            vals.clone(),
            &STRICT,
        ));
        assert_eq!(location, format!("{}:2:7", fx.name("snippets/inner")));
        assert_eq!(
            message,
            format!(
                "undefined variable `spec.nope` (included from {}:2, {}:2)",
                fx.name("snippets/outer"),
                fx.name("templates/t.yaml")
            )
        );
        // With a context, names resolve against that context.
        let (location, message) = template_err(render_one(
            &fx,
            "b: {{ include('ctx', {'name': 'n'}) }}\n",
            vals,
            &STRICT,
        ));
        assert_eq!(location, format!("{}:1:15", fx.name("snippets/ctx")));
        assert!(
            message.starts_with("undefined variable `other` (included from "),
            "{message}"
        );
    }

    #[test]
    fn unknown_functions_mention_channels_and_sprig_names() {
        let fx = Fixture::new();
        let (_, message) = template_err(render_strict(
            &fx,
            "image: {{ ChannelRecommendedImage('aws', '1.34.0', 'amd64') }}\n",
        ));
        assert!(
            message
                .starts_with("unknown function `ChannelRecommendedImage` (kOps channel functions"),
            "{message}"
        );
        assert!(message.contains("offline"), "{message}");
        let (_, message) = template_err(render_one(
            &fx,
            "a: {{ x | toYaml }}\n",
            serde_json::json!({"x": 1}),
            &STRICT,
        ));
        assert_eq!(message, "unknown filter `toYaml` (did you mean `toyaml`?)");
        let (_, message) = template_err(render_one(
            &fx,
            "a: {{ b64enc(x) }}\n",
            serde_json::json!({"x": 1}),
            &STRICT,
        ));
        assert_eq!(
            message,
            "unknown function `b64enc` (did you mean `b64encode`?)"
        );
    }

    #[test]
    fn rendered_documents_must_be_yaml() {
        let fx = Fixture::new();
        let t = "kind: A\n---\nkind: B\nspec:\n  a: [1, 2\n";
        let err = render_strict(&fx, t).unwrap_err();
        match err {
            Error::RenderedYaml {
                template,
                index,
                line,
                column,
                ..
            } => {
                assert_eq!(template, fx.name("templates/t.yaml"));
                assert_eq!(index, 2);
                assert!(line >= 3, "line {line}");
                assert!(column > 0, "column {column}");
            }
            other => panic!("{other:?}"),
        }
        let err = render_strict(&fx, "a: 1\na: 2\n").unwrap_err();
        assert!(
            matches!(
                err,
                Error::RenderedYaml {
                    index: 1,
                    line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn values_print_as_yaml_scalars_and_json_collections() {
        let fx = Fixture::new();
        let t = "a: {{ t }}\nb: {{ l }}\nc: {{ m }}\nd: {{ n }}\ne: {{ f }}\n";
        let vals = serde_json::json!({
            "t": true, "l": [1, "a", null, false], "m": {"k": "v<", "z": null}, "n": null, "f": 1.5
        });
        let out = render_one(&fx, t, vals, &STRICT).unwrap();
        assert_eq!(
            out,
            "a: true\nb: [1,\"a\",null,false]\nc: {\"k\":\"v<\",\"z\":null}\nd: \ne: 1.5\n"
        );
    }

    #[test]
    fn crlf_separators_are_not_split_and_say_so() {
        let fx = Fixture::new();
        let err = render_strict(&fx, "a: 1\r\n---\r\nb: 2\r\n").unwrap_err();
        match err {
            Error::RenderedYaml { index, message, .. } => {
                assert_eq!(index, 1);
                assert!(
                    message.starts_with("more than one YAML document"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lenient_mode_still_names_attribute_access_on_undefined() {
        let fx = Fixture::new();
        fx.file("snippets/unit", "u={{ name }}");
        // An undefined context is an empty one in lenient mode.
        let out = render_one(
            &fx,
            "a: {{ include('unit', missing) }}\n",
            serde_json::json!({}),
            &LENIENT,
        )
        .unwrap();
        assert_eq!(out, "a: u=\n");
        let (_, message) = template_err(render_one(
            &fx,
            "a: {{ foo.bar }}\n",
            serde_json::json!({}),
            &LENIENT,
        ));
        assert_eq!(message, "undefined variable `foo.bar`");
    }

    #[test]
    fn format_yaml_normalises_each_document() {
        let fx = Fixture::new();
        let t = "# only a comment\n---\nkind:   A\nspec: {b: 1,   a: [x, \"yes\"]}\n---\n{{ m | tojson }}\n";
        let opts = RenderOptions {
            fail_on_missing: true,
            format_yaml: true,
        };
        let out = render_one(&fx, t, serde_json::json!({"m": {"z": 1}}), &opts).unwrap();
        assert_eq!(
            out,
            "kind: A\nspec:\n  b: 1\n  a:\n  - x\n  - \"yes\"\n---\nz: 1\n"
        );
        let unformatted = render_one(&fx, t, serde_json::json!({"m": {"z": 1}}), &STRICT).unwrap();
        assert!(
            unformatted.starts_with("# only a comment\n---\nkind:   A\n"),
            "{unformatted}"
        );
    }

    #[test]
    fn error_messages_never_contain_values() {
        let secret = "s3cr3t-Value-42";
        let fx = Fixture::new();
        fx.file(
            "snippets/leak",
            "token: {{ token }}\nnext: {{ token.nope }}\n",
        );
        let vals = serde_json::json!({"token": secret, "nested": {"token": secret}, "n": 1});
        let templates = [
            "a: {{ token }}\nb: {{ missing }}\n",
            "a: {{ token }}\nb: {{ nested.token.more }}\n",
            "a: {{ token + n }}\n",
            "a: {{ include('leak') }}\n",
            "a: {{ token | b64decode }}\n",
            "a: {{ semver_compare(token, token) }}\n",
            "a: {{ token | int }}\n",
            "a: {{ token }}\n  b: {{ token }}\n: - {{ token }}\n",
            "a: {{ token }}\nb: {{ token.x.y }}\n",
            "{{ token }}: {{ token }}\n{{ token }}: 1\n",
            "a: \"{{ token }}\n",
        ];
        for t in templates {
            let err = render_one(&fx, t, vals.clone(), &STRICT).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{t:?} leaked: {shown}");
        }
    }

    #[test]
    fn tracked_render_lists_the_snippets_it_reached() {
        let fx = Fixture::new();
        fx.file("snippets/outer", "o {{ include('inner') }}");
        fx.file("snippets/inner", "i");
        fx.file("snippets/tagged", "t");
        fx.file("snippets/unused", "u");
        fx.file("snippets/branch", "b");
        let t = fx.file(
            "templates/t.yaml",
            "a: {{ include('outer') }}\nb: {% include 'tagged' %}\n{% if flag %}c: {{ include('branch') }}{% endif %}\n",
        );
        let set = TemplateSet::load(&[t], &[fx.path("snippets")]).unwrap();
        let (text, reached) = set
            .render_tracked(&values(serde_json::json!({"flag": false})), &STRICT)
            .unwrap();
        assert_eq!(text, "a: o i\nb: t\n\n");
        let expected: BTreeSet<PathBuf> = ["snippets/inner", "snippets/outer", "snippets/tagged"]
            .iter()
            .map(|p| fx.path(p))
            .collect();
        assert_eq!(reached, expected);
        let (_, reached) = set
            .render_tracked(&values(serde_json::json!({"flag": true})), &STRICT)
            .unwrap();
        assert!(reached.contains(&fx.path("snippets/branch")));
        assert!(!reached.contains(&fx.path("snippets/unused")));
        // An untracked render in between leaves no trace behind.
        set.render(&values(serde_json::json!({"flag": true})), &STRICT)
            .unwrap();
        let (_, reached) = set
            .render_tracked(&values(serde_json::json!({"flag": false})), &STRICT)
            .unwrap();
        assert_eq!(reached, expected);
    }

    #[test]
    fn renders_concurrently_from_many_threads() {
        let fx = Fixture::new();
        fx.file("snippets/ig", "name: {{ name }}\nsize: {{ size }}\n");
        let t = fx.file(
            "templates/c.yaml",
            "cluster: {{ cluster }}\n{% for ig in igs %}---\n{{ include('ig', ig) }}{% endfor %}",
        );
        let set = TemplateSet::load(&[t], &[fx.path("snippets")]).unwrap();
        let expected = |i: usize| {
            format!("cluster: c{i}\n---\nname: a{i}\nsize: {i}\n---\nname: b{i}\nsize: {i}\n")
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let set = &set;
                    scope.spawn(move || {
                        for _ in 0..20 {
                            let vals = values(serde_json::json!({
                                "cluster": format!("c{i}"),
                                "igs": [{"name": format!("a{i}"), "size": i}, {"name": format!("b{i}"), "size": i}],
                            }));
                            let out = set.render(&vals, &STRICT).unwrap();
                            assert_eq!(out, expected(i));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        });
    }

    #[test]
    fn template_set_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TemplateSet>();
    }

    #[test]
    fn variable_paths_skip_literals_filters_tests_and_calls() {
        let text = "a.b[0]['c'] | upper ~ 'lit.x' ~ f(x, k=v) is not defined and y.z";
        let found: Vec<String> = variable_paths(text)
            .iter()
            .map(|p| p.text(text, p.segments.len()))
            .collect();
        assert_eq!(found, ["a.b[0]['c']", "x", "v", "y.z"]);
    }
}
