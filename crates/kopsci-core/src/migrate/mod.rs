//! `kopsci migrate`: converts `kops toolbox template` Go templates (Go's
//! `text/template` with Sprig and kOps' `include`/`indent`) into Jinja
//! templates that kopsci renders to the same bytes, and `kops toolbox
//! template` command lines into fleet files.
//!
//! The contract: for values kOps renders a template with, kopsci renders
//! the converted template to the same output, whitespace included; a
//! construct that cannot keep that promise stops the conversion with
//! `file:line:col: unsupported: …` instead of converting to something that
//! differs. Differences that come from the values rather than the template
//! (kOps reads every number of a values file as a float and prints `null`
//! as `<no value>`) are listed in docs/migrate.md.

pub mod command;
mod convert;
mod lex;
mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// In which order `range` visits a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapOrder {
    /// Sorted by key, as Go does (kOps' values have no order).
    #[default]
    Sorted,
    /// In the order the values files list the keys (kopsci keeps it).
    Values,
}

/// How converted templates behave; the choices kOps' flags make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub map_order: MapOrder,
    /// kOps' `--fail-on-missing` (default true): a missing key fails the
    /// render. When false, a missing key anywhere in `.a.b.c` is "no value",
    /// as Go's `missingkey=default` makes it.
    pub fail_on_missing: bool,
    /// Whether `dict` must make maps `set`/`unset` can change (some file of
    /// the batch changes maps in place, as Sprig allows).
    pub mutable_dicts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            map_order: MapOrder::Sorted,
            fail_on_missing: true,
            mutable_dicts: false,
        }
    }
}

/// What a file is to kOps. A template's root data is the values, which is
/// what `include(name)` passes by default; a snippet's is its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Template,
    Snippet,
    /// Not known (`migrate template`): converted so that it works as either.
    Any,
}

/// Something the user must know about a converted file; the conversion
/// itself succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `toYaml` or `required`: Helm's functions, which `kops toolbox
    /// template` does not have.
    Helm { function: String },
    /// A kOps channel function: its result must now come from the values.
    ChannelValue { call: String, value: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Helm { function } if function == "toYaml" => f.write_str(
                "toYaml is Helm's, not kOps': `kops toolbox template` rejects it; converted to kopsci's toyaml (which keeps the values' key order where Helm sorts keys)",
            ),
            Note::Helm { function } => write!(
                f,
                "{function} is Helm's, not kOps': `kops toolbox template` rejects it; converted to kopsci's {}",
                function.to_lowercase()
            ),
            Note::ChannelValue { call, value } => write!(
                f,
                "`{call}` needs a value: kOps looks it up in its channel over the network and kopsci renders offline; set `{value}` in your values (the render fails until you do)"
            ),
        }
    }
}

/// A note with the place it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedNote {
    /// `file:line:col`.
    pub location: String,
    pub note: Note,
}

impl fmt::Display for LocatedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: note: {}", self.location, self.note)
    }
}

/// One converted file.
#[derive(Debug, Clone)]
pub struct Converted {
    pub jinja: String,
    pub notes: Vec<LocatedNote>,
}

/// `file:line:col` of a byte offset (columns count characters, from 1).
pub(crate) fn location(origin: &str, src: &str, pos: usize) -> String {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = src[line_start..pos].chars().count() + 1;
    format!("{origin}:{line}:{col}")
}

/// The function names Go's templates and kOps' function map know (Go,
/// Sprig, kOps). Go refuses an unknown name at parse time; so does the
/// converter, while a known but unconvertible one is "unsupported".
fn is_function(name: &str) -> bool {
    GO_FUNCTIONS.contains(&name)
        || SPRIG_FUNCTIONS.contains(&name)
        || matches!(name, "include" | "indent")
        || convert::channel_value_name(name).is_some()
        // Helm's, converted with a note.
        || matches!(name, "toYaml" | "required")
}

const GO_FUNCTIONS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

/// Sprig v3's `TxtFuncMap`.
const SPRIG_FUNCTIONS: &[&str] = &[
    "hello",
    "ago",
    "date",
    "date_in_zone",
    "date_modify",
    "dateInZone",
    "dateModify",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "must_date_modify",
    "mustDateModify",
    "mustToDate",
    "now",
    "toDate",
    "unixEpoch",
    "abbrev",
    "abbrevboth",
    "trunc",
    "trim",
    "upper",
    "lower",
    "title",
    "untitle",
    "substr",
    "repeat",
    "trimall",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "nospace",
    "initials",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "swapcase",
    "shuffle",
    "snakecase",
    "camelcase",
    "kebabcase",
    "wrap",
    "wrapWith",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "replace",
    "plural",
    "sha1sum",
    "sha256sum",
    "adler32sum",
    "toString",
    "atoi",
    "int64",
    "int",
    "float64",
    "seq",
    "toDecimal",
    "split",
    "splitList",
    "splitn",
    "toStrings",
    "until",
    "untilStep",
    "add1",
    "add",
    "sub",
    "div",
    "mod",
    "mul",
    "randInt",
    "add1f",
    "addf",
    "subf",
    "divf",
    "mulf",
    "biggest",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "join",
    "sortAlpha",
    "default",
    "empty",
    "coalesce",
    "all",
    "any",
    "compact",
    "mustCompact",
    "fromJson",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "mustFromJson",
    "mustToJson",
    "mustToPrettyJson",
    "mustToRawJson",
    "ternary",
    "deepCopy",
    "mustDeepCopy",
    "typeOf",
    "typeIs",
    "typeIsLike",
    "kindOf",
    "kindIs",
    "deepEqual",
    "env",
    "expandenv",
    "getHostByName",
    "base",
    "dir",
    "clean",
    "ext",
    "isAbs",
    "osBase",
    "osClean",
    "osDir",
    "osExt",
    "osIsAbs",
    "b64enc",
    "b64dec",
    "b32enc",
    "b32dec",
    "tuple",
    "list",
    "dict",
    "get",
    "set",
    "unset",
    "hasKey",
    "pluck",
    "keys",
    "pick",
    "omit",
    "merge",
    "mergeOverwrite",
    "mustMerge",
    "mustMergeOverwrite",
    "values",
    "append",
    "push",
    "mustAppend",
    "mustPush",
    "prepend",
    "mustPrepend",
    "first",
    "mustFirst",
    "rest",
    "mustRest",
    "last",
    "mustLast",
    "initial",
    "mustInitial",
    "reverse",
    "mustReverse",
    "uniq",
    "mustUniq",
    "without",
    "mustWithout",
    "has",
    "mustHas",
    "mustSlice",
    "concat",
    "dig",
    "chunk",
    "mustChunk",
    "bcrypt",
    "htpasswd",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "encryptAES",
    "decryptAES",
    "randBytes",
    "uuidv4",
    "semver",
    "semverCompare",
    "fail",
    "regexMatch",
    "mustRegexMatch",
    "regexFindAll",
    "mustRegexFindAll",
    "regexFind",
    "mustRegexFind",
    "regexReplaceAll",
    "mustRegexReplaceAll",
    "regexReplaceAllLiteral",
    "mustRegexReplaceAllLiteral",
    "regexSplit",
    "mustRegexSplit",
    "regexQuoteMeta",
    "urlParse",
    "urlJoin",
];

/// Whether a Go template changes maps in place (`set`/`unset`), so that
/// `dict` must make changeable maps in every file converted with it.
/// A file that does not parse counts as not mutating (its conversion fails
/// anyway).
pub fn changes_maps(source: &str) -> bool {
    let Ok(items) = lex::lex(source) else {
        return false;
    };
    items
        .iter()
        .any(|i| i.kind == lex::Kind::Identifier && matches!(i.val.as_str(), "set" | "unset"))
}

/// Converts one Go template. `origin` names it in messages. Every
/// unsupported construct of the file is reported, one per line.
pub fn convert_source(source: &str, origin: &str, role: Role, opts: &Options) -> Result<Converted> {
    let problem =
        |pos: usize, message: &str| format!("{}: {message}", location(origin, source, pos));
    let template = parse::parse(source, &is_function).map_err(|e| Error::Migrate {
        problems: vec![problem(e.pos, &e.message)],
    })?;
    let converted = convert::Converter::new(source, &template, opts, role)
        .run()
        .map_err(|problems| Error::Migrate {
            problems: problems
                .iter()
                .map(|p| problem(p.pos, &p.message))
                .collect(),
        })?;
    Ok(Converted {
        jinja: converted.jinja,
        notes: converted
            .notes
            .into_iter()
            .map(|(pos, note)| LocatedNote {
                location: location(origin, source, pos),
                note,
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------
// Files

/// One file to convert and where its conversion goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
    pub role: Role,
    /// How messages name the input (default: its path as given).
    pub origin: Option<String>,
}

/// A converted file ready to be written.
#[derive(Debug, Clone)]
pub struct Output {
    pub job: Job,
    pub converted: Converted,
}

/// Expands `inputs` (files, or directories walked recursively in lexical
/// order as kOps walks them) into jobs writing under `out`: a file given by
/// name goes to `out/<its name>`, a directory's files to `out/<their path
/// inside it>`. Returns the jobs and the hidden files kOps would read but
/// kopsci skips (they are not converted).
pub fn plan(inputs: &[PathBuf], out: &Path, role: Role) -> Result<(Vec<Job>, Vec<PathBuf>)> {
    let mut jobs = Vec::new();
    let mut hidden = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if !meta.is_dir() {
            let name = input
                .file_name()
                .ok_or_else(|| Error::Usage(format!("{}: not a file name", input.display())))?;
            jobs.push(Job {
                input: input.clone(),
                output: out.join(name),
                role,
                origin: None,
            });
            continue;
        }
        let (files, skipped) = walk(input)?;
        hidden.extend(skipped);
        for file in files {
            let relative = file.strip_prefix(input).unwrap_or(&file).to_path_buf();
            jobs.push(Job {
                output: out.join(relative),
                input: file,
                role,
                origin: None,
            });
        }
    }
    let mut seen: BTreeMap<&Path, &Path> = BTreeMap::new();
    for job in &jobs {
        if let Some(first) = seen.insert(&job.output, &job.input) {
            return Err(Error::Usage(format!(
                "{} and {} would both be converted to {}: convert them into different --out directories",
                first.display(),
                job.input.display(),
                job.output.display()
            )));
        }
    }
    Ok((jobs, hidden))
}

/// The files under `dir` in lexical order: the ones kopsci reads, and the
/// hidden ones (kOps' `filepath.Walk` reads those too; kopsci skips them).
fn walk(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut hidden = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let at = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.to_path_buf());
            Error::io(at, std::io::Error::other(e.to_string()))
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let is_hidden = relative
            .components()
            .any(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'));
        if is_hidden {
            hidden.push(entry.into_path());
        } else {
            files.push(entry.into_path());
        }
    }
    Ok((files, hidden))
}

/// Converts every job in memory; fails with every problem of every file.
pub fn convert_jobs(
    jobs: &[Job],
    map_order: MapOrder,
    fail_on_missing: bool,
) -> Result<Vec<Output>> {
    let mut sources = Vec::with_capacity(jobs.len());
    for job in jobs {
        let bytes = std::fs::read(&job.input).map_err(|e| Error::io(&job.input, e))?;
        let source = String::from_utf8(bytes).map_err(|_| Error::Migrate {
            problems: vec![format!(
                "{}: not UTF-8 text (is it a template?)",
                job.input.display()
            )],
        })?;
        sources.push(source);
    }
    let opts = Options {
        map_order,
        fail_on_missing,
        mutable_dicts: sources.iter().any(|s| changes_maps(s)),
    };
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for (job, source) in jobs.iter().zip(&sources) {
        let origin = job
            .origin
            .clone()
            .unwrap_or_else(|| job.input.display().to_string());
        match convert_source(source, &origin, job.role, &opts) {
            Ok(converted) => outputs.push(Output {
                job: job.clone(),
                converted,
            }),
            Err(Error::Migrate { problems: more }) => problems.extend(more),
            Err(other) => return Err(other),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Migrate { problems });
    }
    Ok(outputs)
}

/// Writes converted files, each atomically, after checking all of them:
/// nothing is written when an output would replace an input, or an existing
/// file without `force`.
pub fn write_outputs(outputs: &[Output], inputs: &[PathBuf], force: bool) -> Result<()> {
    let canonical_inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    for output in outputs {
        let path = &output.job.output;
        if let Ok(existing) = std::fs::canonicalize(path) {
            if canonical_inputs.contains(&existing)
                || std::fs::canonicalize(&output.job.input).ok().as_ref() == Some(&existing)
            {
                return Err(Error::Usage(format!(
                    "refusing to overwrite the Go template {} with its conversion: choose another --out",
                    path.display()
                )));
            }
            if !force {
                return Err(Error::Usage(format!(
                    "{} exists: pass --force to replace it",
                    path.display()
                )));
            }
        }
    }
    for output in outputs {
        let path = &output.job.output;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        crate::fsutil::write_atomic(path, output.converted.jinja.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
