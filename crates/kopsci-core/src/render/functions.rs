//! The template functions and filters kopsci adds on top of minijinja's
//! built-ins: Jinja-shaped equivalents of the Sprig functions kOps templates
//! use (`nindent`, `toyaml`, `b64encode`, `quote`, `required`, …), and the
//! conversions between serde values and template values.
//!
//! Conventions, so templates read the same everywhere:
//!
//! * Most helpers are both a filter and a function with the value first:
//!   `x | b64encode` and `b64encode(x)`. `nindent` and `required` are filters
//!   only, because their Sprig argument order (`nindent 4 x`,
//!   `required "msg" x`) would be the opposite of the Jinja function order.
//! * `indent` stays minijinja's built-in (first line not indented unless
//!   `first=true`, trailing newline dropped); `nindent` is Sprig's: a newline,
//!   then every non-empty line indented.
//! * `default` is minijinja's built-in: it replaces *undefined* values only;
//!   `default(x, true)` also replaces falsy values (`none`, `""`, `0`), which
//!   is what Sprig's `default` does.
//! * Error messages never contain the values being processed (they may be
//!   secrets): they name the function and the kind of problem only.
//! * Strict mode (`--fail-on-missing`, the default) means every filter, test
//!   and function refuses an undefined argument, and every value that is
//!   printed or serialised (`{{ x }}`, `tojson`, `toyaml`, `join`, …) may not
//!   hold one anywhere inside. minijinja's own strict mode lets some
//!   built-ins through (`tojson` prints `null`, `join` and `escape` print
//!   nothing, tests answer `false`), so the built-ins are re-registered
//!   behind [`guard`]. Only `default`/`d`, `required` and the tests
//!   `defined`/`undefined` take an undefined value on purpose. Lenient mode
//!   keeps minijinja's behaviour.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use sha2::{Digest as _, Sha256};

/// Registers every kopsci filter and function on `env`, and the formatter
/// that prints values the way a YAML manifest needs them.
pub(crate) fn register(env: &mut Environment<'_>) {
    env.set_formatter(format_value);
    guard_builtins(env);
    env.add_filter("nindent", nindent);

    env.add_filter("toyaml", toyaml);
    env.add_function("toyaml", toyaml);
    // `tojson` is minijinja's filter; the function form is added for symmetry
    // with the other helpers.
    env.add_function("tojson", tojson_function);

    env.add_filter("b64encode", b64encode);
    env.add_function("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_function("b64decode", b64decode);

    env.add_filter("quote", quote);
    env.add_function("quote", quote);

    env.add_filter("required", required);

    env.add_filter("sha256sum", sha256sum);
    env.add_function("sha256sum", sha256sum);

    env.add_filter("semver_compare", semver_compare);
    env.add_function("semver_compare", semver_compare);
}

/// The filters kopsci adds (each checks for undefined values itself).
/// `required` takes an undefined value on purpose, to report it with the
/// author's message; so do minijinja's `default`/`d` (to replace it) and the
/// tests `defined`/`undefined`, which stay unguarded.
#[cfg(test)]
pub(crate) const OWN_FILTERS: &[&str] = &[
    "nindent",
    "toyaml",
    "b64encode",
    "b64decode",
    "quote",
    "required",
    "sha256sum",
    "semver_compare",
];

/// Built-in filters whose output is the whole value, so an undefined value
/// anywhere inside it (`[x] | tojson` with `x` undefined) would be printed as
/// `null` or nothing: their first argument is checked all the way down.
const SERIALISING_FILTERS: &[&str] = &["tojson", "join", "string", "pprint", "format"];

/// Re-registers minijinja's built-in filters and tests behind [`guard`].
fn guard_builtins(env: &mut Environment<'_>) {
    for (name, original) in builtin_filters() {
        env.add_filter(name, guard(original, SERIALISING_FILTERS.contains(&name)));
    }
    for (name, original) in builtin_tests() {
        let guarded = guard(original, false);
        env.add_test(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
            guarded(state, args).map(|v| v.is_true())
        });
    }
}

/// minijinja's built-in filters but `default`/`d`. minijinja cannot list an
/// environment's filters, so this mirrors its `defaults.rs` (3.0); the render
/// tests try each name.
pub(crate) fn builtin_filters() -> Vec<(&'static str, Value)> {
    use minijinja::filters as f;
    vec![
        ("safe", Value::from_function(f::safe)),
        ("escape", Value::from_function(f::escape)),
        ("e", Value::from_function(f::escape)),
        ("lower", Value::from_function(f::lower)),
        ("upper", Value::from_function(f::upper)),
        ("title", Value::from_function(f::title)),
        ("capitalize", Value::from_function(f::capitalize)),
        ("replace", Value::from_function(f::replace)),
        ("length", Value::from_function(f::length)),
        ("count", Value::from_function(f::length)),
        ("dictsort", Value::from_function(f::dictsort)),
        ("items", Value::from_function(f::items)),
        ("reverse", Value::from_function(f::reverse)),
        ("trim", Value::from_function(f::trim)),
        ("join", Value::from_function(f::join)),
        ("split", Value::from_function(f::split)),
        ("lines", Value::from_function(f::lines)),
        ("round", Value::from_function(f::round)),
        ("abs", Value::from_function(f::abs)),
        ("int", Value::from_function(f::int)),
        ("float", Value::from_function(f::float)),
        ("attr", Value::from_function(f::attr)),
        ("first", Value::from_function(f::first)),
        ("last", Value::from_function(f::last)),
        ("min", Value::from_function(f::min)),
        ("max", Value::from_function(f::max)),
        ("sort", Value::from_function(f::sort)),
        ("list", Value::from_function(f::list)),
        ("string", Value::from_function(f::string)),
        ("bool", Value::from_function(f::bool)),
        ("batch", Value::from_function(f::batch)),
        ("slice", Value::from_function(f::slice)),
        ("sum", Value::from_function(f::sum)),
        ("indent", Value::from_function(f::indent)),
        ("select", Value::from_function(f::select)),
        ("reject", Value::from_function(f::reject)),
        ("selectattr", Value::from_function(f::selectattr)),
        ("rejectattr", Value::from_function(f::rejectattr)),
        ("map", Value::from_function(f::map)),
        ("groupby", Value::from_function(f::groupby)),
        ("unique", Value::from_function(f::unique)),
        ("chain", Value::from_function(f::chain)),
        ("zip", Value::from_function(f::zip)),
        ("pprint", Value::from_function(f::pprint)),
        ("format", Value::from_function(f::format)),
        ("tojson", Value::from_function(f::tojson)),
    ]
}

/// minijinja's built-in tests but `defined`/`undefined`, as
/// [`builtin_filters`].
pub(crate) fn builtin_tests() -> Vec<(&'static str, Value)> {
    use minijinja::tests as t;
    vec![
        ("none", Value::from_function(t::is_none)),
        ("safe", Value::from_function(t::is_safe)),
        ("escaped", Value::from_function(t::is_safe)),
        ("boolean", Value::from_function(t::is_boolean)),
        ("odd", Value::from_function(t::is_odd)),
        ("even", Value::from_function(t::is_even)),
        ("divisibleby", Value::from_function(t::is_divisibleby)),
        ("number", Value::from_function(t::is_number)),
        ("integer", Value::from_function(t::is_integer)),
        ("int", Value::from_function(t::is_integer)),
        ("float", Value::from_function(t::is_float)),
        ("string", Value::from_function(t::is_string)),
        ("sequence", Value::from_function(t::is_sequence)),
        ("iterable", Value::from_function(t::is_iterable)),
        ("mapping", Value::from_function(t::is_mapping)),
        ("startingwith", Value::from_function(t::is_startingwith)),
        ("endingwith", Value::from_function(t::is_endingwith)),
        ("lower", Value::from_function(t::is_lower)),
        ("upper", Value::from_function(t::is_upper)),
        ("sameas", Value::from_function(t::is_sameas)),
        ("eq", Value::from_function(t::is_eq)),
        ("equalto", Value::from_function(t::is_eq)),
        ("==", Value::from_function(t::is_eq)),
        ("ne", Value::from_function(t::is_ne)),
        ("!=", Value::from_function(t::is_ne)),
        ("lt", Value::from_function(t::is_lt)),
        ("lessthan", Value::from_function(t::is_lt)),
        ("<", Value::from_function(t::is_lt)),
        ("le", Value::from_function(t::is_le)),
        ("<=", Value::from_function(t::is_le)),
        ("gt", Value::from_function(t::is_gt)),
        ("greaterthan", Value::from_function(t::is_gt)),
        (">", Value::from_function(t::is_gt)),
        ("ge", Value::from_function(t::is_ge)),
        (">=", Value::from_function(t::is_ge)),
        ("in", Value::from_function(t::is_in)),
        ("true", Value::from_function(t::is_true)),
        ("false", Value::from_function(t::is_false)),
        ("filter", Value::from_function(t::is_filter)),
        ("test", Value::from_function(t::is_test)),
    ]
}

/// Puts every function of `env` (built-in, kopsci's, `include`) behind
/// [`guard`]. Functions live among the globals, so unlike filters they can
/// be listed: this runs last, after everything is registered.
pub(crate) fn guard_functions(env: &mut Environment<'_>) {
    let functions: Vec<(String, Value)> = env
        .globals()
        .filter(|(_, value)| value.kind() == ValueKind::Plain)
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    for (name, original) in functions {
        env.add_function(name, guard(original, false));
    }
}

/// Wraps a filter, test or function so that, in strict mode, an undefined
/// argument (positional or keyword) is an undefined-variable error before
/// the original runs; with `deep`, so is one inside a list or map given as
/// the first argument. The renderer names the undefined expression from the
/// call's source span.
fn guard(
    original: Value,
    deep: bool,
) -> impl Fn(&mut State, Rest<ValueOrKwargs>) -> Result<Value, Error> + Send + Sync + 'static {
    move |state: &mut State, args: Rest<ValueOrKwargs>| {
        let args = args.into_values();
        if strict(state) {
            check_defined(&args, deep)?;
        }
        original.call(state, &args)
    }
}

fn check_defined(args: &[Value], deep: bool) -> Result<(), Error> {
    for (i, arg) in args.iter().enumerate() {
        if arg.is_kwargs() {
            for key in arg.try_iter()? {
                if arg.get_item(&key)?.is_undefined() {
                    return Err(undefined());
                }
            }
        } else if arg.is_undefined() || (deep && i == 0 && holds_undefined(arg, 0)) {
            return Err(undefined());
        }
    }
    Ok(())
}

/// Whether a list or map holds an undefined value at any depth.
fn holds_undefined(value: &Value, depth: usize) -> bool {
    if value.is_undefined() {
        return true;
    }
    if depth > MAX_CONVERT_DEPTH {
        return false;
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()
            .is_ok_and(|mut items| items.any(|item| holds_undefined(&item, depth + 1))),
        ValueKind::Map => value.try_iter().is_ok_and(|mut keys| {
            keys.any(|key| {
                value
                    .get_item(&key)
                    .is_ok_and(|item| holds_undefined(&item, depth + 1))
            })
        }),
        _ => false,
    }
}

/// Sprig/Go names a kOps template might use, with their kopsci spelling, so
/// that an unknown-function error can point at the right name.
pub(crate) fn sprig_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "toYaml" | "to_yaml" => "toyaml",
        "toJson" | "to_json" | "toPrettyJson" => "tojson",
        "b64enc" => "b64encode",
        "b64dec" => "b64decode",
        "squote" => "quote",
        "semverCompare" => "semver_compare",
        _ => return None,
    })
}

/// An error that names the helper that failed. Never put a value in `what`.
fn fail(function: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{function}: {what}"))
}

/// An undefined-value error: the renderer turns it into "undefined variable
/// `expr`" using the failing expression's source text.
fn undefined() -> Error {
    Error::from(ErrorKind::UndefinedError)
}

/// Whether an undefined argument must fail instead of counting as empty.
/// Only strict mode fails: lenient mode prints undefined values as empty,
/// and helpers follow that.
fn strict(state: &State) -> bool {
    matches!(
        state.undefined_behavior(),
        UndefinedBehavior::Strict | UndefinedBehavior::SemiStrict
    )
}

/// The text of a scalar argument the way Go's `fmt` prints it (Sprig
/// functions take Go strings): booleans are `true`/`false` rather than
/// minijinja's Python-style `True`; `none` is empty. Lists and maps are
/// refused: encoding a structure's debug form is never what was meant.
fn text<'a>(state: &State, function: &str, value: &'a Value) -> Result<Cow<'a, str>, Error> {
    match value.kind() {
        ValueKind::Undefined if strict(state) => Err(undefined()),
        ValueKind::Undefined | ValueKind::None => Ok(Cow::Borrowed("")),
        ValueKind::String => Ok(value
            .as_str()
            .map_or_else(|| Cow::Owned(value.to_string()), Cow::Borrowed)),
        ValueKind::Bool => Ok(Cow::Borrowed(if value.is_true() {
            "true"
        } else {
            "false"
        })),
        ValueKind::Number => Ok(Cow::Owned(value.to_string())),
        ValueKind::Bytes => match value.as_bytes().map(std::str::from_utf8) {
            Some(Ok(s)) => Ok(Cow::Borrowed(s)),
            _ => Err(fail(function, "the bytes are not valid UTF-8")),
        },
        other => Err(fail(
            function,
            format_args!("expected a string, got a {other}"),
        )),
    }
}

/// Prints `{{ value }}`. minijinja prints Python-style (`True`, `None`,
/// `{'a': None}`), which YAML reads as other values or not at all. Here:
/// booleans are `true`/`false` (as Go templates print them), `none` prints
/// nothing (so `key: {{ x }}` stays null), and lists and maps print as
/// compact JSON, which is valid YAML flow syntax and what Sprig's `toJson`
/// gives (in strict mode a list or map holding an undefined value is an
/// error, not `null`). Everything else is minijinja's default.
fn format_value(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => Ok(()),
        ValueKind::Bool => out
            .write_str(if value.is_true() { "true" } else { "false" })
            .map_err(Error::from),
        ValueKind::Seq | ValueKind::Map => match to_json_at(value, 0, strict(state)) {
            Err(Convert::Undefined) => Err(undefined()),
            Ok(json) => match serde_json::to_string(&json) {
                Ok(text) => out.write_str(&text).map_err(Error::from),
                Err(_) => minijinja::escape_formatter(out, state, value),
            },
            Err(Convert::Invalid(_)) => minijinja::escape_formatter(out, state, value),
        },
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// `text | nindent(n)`: Sprig's `nindent`: a newline, then the text with
/// every line indented by `n` spaces. Empty lines stay empty (Sprig pads
/// them, which leaves trailing whitespace in YAML block scalars).
fn nindent(state: &State, value: &Value, width: usize) -> Result<String, Error> {
    let text = text(state, "nindent", value)?;
    let pad = " ".repeat(width);
    let mut out = String::with_capacity(text.len() + 1 + width * 4);
    out.push('\n');
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if !line.is_empty() && line != "\r" {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    Ok(out)
}

/// `value | toyaml`: the value as YAML, without the final newline (like
/// Helm's `toYaml`), so `{{ x | toyaml | nindent(4) }}` lines up.
fn toyaml(state: &State, value: &Value) -> Result<String, Error> {
    let json = to_json_for(state, "toyaml", value)?;
    let yaml = crate::yaml::to_string(&json)
        .map_err(|_| fail("toyaml", "the value cannot be written as YAML"))?;
    Ok(match yaml.strip_suffix('\n') {
        Some(trimmed) => trimmed.to_string(),
        None => yaml,
    })
}

/// `tojson(value)`: the function form of minijinja's `tojson` filter.
fn tojson_function(
    state: &State,
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if strict(state) && holds_undefined(value, 0) {
        return Err(undefined());
    }
    minijinja::filters::tojson(value, indent, kwargs)
}

/// `text | b64encode`: standard base64 with padding (Sprig's `b64enc`).
fn b64encode(state: &State, value: &Value) -> Result<String, Error> {
    let text = text(state, "b64encode", value)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
}

/// `text | b64decode`: the inverse of `b64encode`. Unlike Sprig, which
/// returns its error message as the result, invalid input is an error, and
/// so is decoded data that is not UTF-8 text.
fn b64decode(state: &State, value: &Value) -> Result<String, Error> {
    let text = text(state, "b64decode", value)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|_| fail("b64decode", "the input is not valid base64"))?;
    String::from_utf8(bytes).map_err(|_| fail("b64decode", "the decoded data is not UTF-8 text"))
}

/// `value | quote`: the value in double quotes, escaped like Go's `%q`
/// (Sprig's `quote`), so it is also a valid YAML double-quoted scalar.
/// `none` (and undefined in lenient mode) quote to nothing, like Sprig's nil.
fn quote(state: &State, value: &Value) -> Result<String, Error> {
    if value.is_none() || (value.is_undefined() && !strict(state)) {
        return Ok(String::new());
    }
    let text = text(state, "quote", value)?;
    Ok(go_quote(&text))
}

/// Go's `strconv.Quote` for the characters templates meet: backslash, double
/// quote, the C escapes, other control characters as `\xNN` (`\u` above
/// ASCII). Printable non-ASCII characters stay as they are.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value | required("message")`: fails with `message` when the value is
/// undefined, `none` or the empty string, and passes it through otherwise.
/// It works in strict mode too: minijinja hands a filter's first argument
/// over as an undefined value instead of failing the lookup, as long as the
/// filter takes it as a plain `Value`.
fn required(value: &Value, message: Cow<'_, str>) -> Result<Value, Error> {
    let missing = value.is_undefined() || value.is_none() || value.as_str() == Some("");
    if missing {
        // The message is the template author's text, not a value.
        Err(Error::new(
            ErrorKind::InvalidOperation,
            message.into_owned(),
        ))
    } else {
        Ok(value.clone())
    }
}

/// `text | sha256sum`: the lowercase hex SHA-256 digest of the text.
fn sha256sum(state: &State, value: &Value) -> Result<String, Error> {
    let text = text(state, "sha256sum", value)?;
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    Ok(out)
}

/// `semver_compare(version, constraint)`: whether `version` satisfies the
/// Go-style (Masterminds) `constraint`, as Sprig's `semverCompare` does.
fn semver_compare(state: &State, version: &Value, constraint: &Value) -> Result<bool, Error> {
    let version = text(state, "semver_compare", version)?;
    let constraint = text(state, "semver_compare", constraint)?;
    let version = parse_version(&version)
        .ok_or_else(|| fail("semver_compare", "the version is not a semantic version"))?;
    constraint_matches(&constraint, &version).ok_or_else(|| {
        fail(
            "semver_compare",
            "the constraint is not a valid version constraint",
        )
    })
}

/// Parses a version the lenient way Go's Masterminds semver does: an
/// optional leading `v` (`v1.34.0`), and a missing minor or patch number
/// counts as zero (`1.34` is `1.34.0`).
pub(crate) fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(core_end);
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => text.to_string(),
    };
    semver::Version::parse(&padded).ok()
}

/// Evaluates a Masterminds-style constraint: `||` separates alternatives;
/// within one, comparators are separated by commas or spaces and all must
/// hold. Operators: `=` (also none, and `==`), `!=`, `>`, `>=`, `<`, `<=`,
/// `~`, `^`; versions may be partial (`>=1.30`), start with `v` or use
/// wildcards (`1.30.x`). Returns `None` when the constraint does not parse.
pub(crate) fn constraint_matches(constraint: &str, version: &semver::Version) -> Option<bool> {
    let mut any = false;
    for alternative in constraint.split("||") {
        let comparators = comparators(alternative)?;
        if comparators.is_empty() {
            return None;
        }
        let mut all = true;
        for (negate, req) in &comparators {
            if req.matches(version) == *negate {
                all = false;
            }
        }
        any |= all;
    }
    Some(any)
}

/// Splits one `||` alternative into `(negated, requirement)` pairs.
fn comparators(alternative: &str) -> Option<Vec<(bool, semver::VersionReq)>> {
    let spaced = alternative.replace(',', " ");
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op: Option<&str> = None;
    for token in spaced.split_whitespace() {
        let is_bare_op = token.chars().all(|c| "=!<>~^".contains(c));
        match (pending_op.take(), is_bare_op) {
            (None, true) => pending_op = Some(token),
            (Some(_), true) => return None,
            (Some(op), false) => tokens.push(format!("{op}{token}")),
            (None, false) => tokens.push(token.to_string()),
        }
    }
    if pending_op.is_some() {
        return None;
    }
    tokens
        .iter()
        .map(|token| {
            let split = token
                .find(|c: char| !"=!<>~^".contains(c))
                .unwrap_or(token.len());
            let (op, version) = token.split_at(split);
            let version = version
                .strip_prefix('v')
                .or_else(|| version.strip_prefix('V'))
                .unwrap_or(version);
            let (negate, op) = match op {
                "" | "=" | "==" => (false, "="),
                "!=" => (true, "="),
                ">" | ">=" | "<" | "<=" | "~" | "^" => (false, op),
                "=>" => (false, ">="),
                "=<" => (false, "<="),
                "~>" => (false, "~"),
                _ => return None,
            };
            let req = semver::VersionReq::parse(&format!("{op}{version}")).ok()?;
            Some((negate, req))
        })
        .collect()
}

/// Converts a serde value (what values files parse to) into a template value,
/// keeping map order.
pub(crate) fn to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => map_to_value(map),
    }
}

/// Converts a serde map into a template map, keeping its order.
pub(crate) fn map_to_value(map: &serde_json::Map<String, serde_json::Value>) -> Value {
    let map: indexmap::IndexMap<Value, Value> = map
        .iter()
        .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
        .collect();
    Value::from(map)
}

/// How deep [`to_json`] follows nested values before giving up; template
/// values cannot normally be cyclic, this only keeps a pathological one from
/// overflowing the stack.
const MAX_CONVERT_DEPTH: usize = 512;

/// Converts a template value back into a serde value, leniently: undefined
/// becomes null. Values that are not data (macros, functions, bytes) are
/// refused. The error text names kinds only, never values.
#[cfg(test)]
pub(crate) fn to_json(value: &Value) -> Result<serde_json::Value, String> {
    to_json_at(value, 0, false).map_err(|e| match e {
        Convert::Undefined => "the value is undefined".to_string(),
        Convert::Invalid(what) => what,
    })
}

/// [`to_json`] for helper `function`, following the render's strictness: in
/// strict mode an undefined value anywhere inside is an undefined-variable
/// error.
fn to_json_for(state: &State, function: &str, value: &Value) -> Result<serde_json::Value, Error> {
    to_json_at(value, 0, strict(state)).map_err(|e| match e {
        Convert::Undefined => undefined(),
        Convert::Invalid(what) => fail(function, what),
    })
}

/// Why a value could not be converted.
enum Convert {
    /// Strict conversion met an undefined value.
    Undefined,
    /// The value is not data; the text names kinds only.
    Invalid(String),
}

impl From<String> for Convert {
    fn from(what: String) -> Self {
        Convert::Invalid(what)
    }
}

fn to_json_at(value: &Value, depth: usize, strict: bool) -> Result<serde_json::Value, Convert> {
    if depth > MAX_CONVERT_DEPTH {
        return Err(Convert::Invalid(
            "the value is nested too deeply".to_string(),
        ));
    }
    Ok(match value.kind() {
        ValueKind::Undefined if strict => return Err(Convert::Undefined),
        ValueKind::Undefined | ValueKind::None => serde_json::Value::Null,
        ValueKind::Bool => serde_json::Value::Bool(value.is_true()),
        ValueKind::Number => number_to_json(value)?,
        ValueKind::String => serde_json::Value::String(
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string),
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let iter = value
                .try_iter()
                .map_err(|_| "a sequence could not be iterated".to_string())?;
            let mut items = Vec::new();
            for item in iter {
                items.push(to_json_at(&item, depth + 1, strict)?);
            }
            serde_json::Value::Array(items)
        }
        ValueKind::Map => {
            let keys = value
                .try_iter()
                .map_err(|_| "a map could not be iterated".to_string())?;
            let mut map = serde_json::Map::new();
            for key in keys {
                let item = value
                    .get_item(&key)
                    .map_err(|_| "a map entry could not be read".to_string())?;
                let key = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => match key.kind() {
                        ValueKind::Number | ValueKind::Bool | ValueKind::None => {
                            match to_json_at(&key, depth + 1, strict)? {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            }
                        }
                        other => {
                            return Err(Convert::Invalid(format!(
                                "a map key is a {other}, not a string"
                            )));
                        }
                    },
                };
                map.insert(key, to_json_at(&item, depth + 1, strict)?);
            }
            serde_json::Value::Object(map)
        }
        other => {
            return Err(Convert::Invalid(format!(
                "a {other} value cannot be written as data"
            )));
        }
    })
}

fn number_to_json(value: &Value) -> Result<serde_json::Value, String> {
    if value.is_integer() {
        if let Ok(i) = i64::try_from(value.clone()) {
            return Ok(i.into());
        }
        if let Ok(u) = u64::try_from(value.clone()) {
            return Ok(u.into());
        }
        return Err("an integer is out of range".to_string());
    }
    f64::try_from(value.clone())
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(serde_json::Value::Number)
        .ok_or_else(|| "a number is not finite".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::UndefinedBehavior;

    fn env(strict: bool) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_debug(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(if strict {
            UndefinedBehavior::Strict
        } else {
            UndefinedBehavior::Lenient
        });
        register(&mut env);
        env
    }

    fn render(src: &str, ctx: serde_json::Value) -> Result<String, Error> {
        env(true).render_str(src, to_value(&ctx))
    }

    fn ok(src: &str, ctx: serde_json::Value) -> String {
        match render(src, ctx) {
            Ok(s) => s,
            Err(e) => panic!("{src}: {e}"),
        }
    }

    fn err(src: &str, ctx: serde_json::Value) -> Error {
        match render(src, ctx) {
            Ok(s) => panic!("{src}: expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn nindent_is_sprig_like_and_skips_empty_lines() {
        let ctx = serde_json::json!({"t": "a: 1\n\nb: 2\n"});
        assert_eq!(ok("x:{{ t | nindent(2) }}", ctx), "x:\n  a: 1\n\n  b: 2\n");
        assert_eq!(
            ok("{{ 'a' | nindent(4) }}", serde_json::json!({})),
            "\n    a"
        );
        // The built-in indent is untouched: first line not indented.
        assert_eq!(
            ok("{{ 'a\nb' | indent(2) }}", serde_json::json!({})),
            "a\n  b"
        );
        assert_eq!(
            ok(
                "{{ 'a\nb' | indent(2, first=true) }}",
                serde_json::json!({})
            ),
            "  a\n  b"
        );
    }

    #[test]
    fn toyaml_trims_the_final_newline_and_keeps_order() {
        let ctx = serde_json::json!({"m": {"z": 1, "a": [true, "yes"], "n": null}});
        assert_eq!(
            ok("{{ m | toyaml }}", ctx.clone()),
            "z: 1\na:\n- true\n- \"yes\"\n\"n\": null"
        );
        assert_eq!(ok("{{ toyaml(m.z) }}", ctx.clone()), "1");
        assert_eq!(ok("{{ {'k': 'v'} | toyaml }}", ctx), "k: v");
        let e = err("{{ nope | toyaml }}", serde_json::json!({}));
        assert_eq!(e.kind(), ErrorKind::UndefinedError);
        let lenient = env(false).render_str("{{ nope | toyaml }}", ()).unwrap();
        assert_eq!(lenient, "null");
    }

    #[test]
    fn tojson_as_filter_and_function() {
        let ctx = serde_json::json!({"l": ["1.2.3.4/32", "4.3.2.1/32"]});
        assert_eq!(
            ok("{{ l | tojson }}", ctx.clone()),
            r#"["1.2.3.4/32", "4.3.2.1/32"]"#
        );
        assert_eq!(
            ok("{{ tojson(l) }}", ctx),
            r#"["1.2.3.4/32", "4.3.2.1/32"]"#
        );
    }

    #[test]
    fn base64_round_trip_and_errors() {
        let ctx = serde_json::json!({"s": "hello\nworld", "n": 42, "b": true});
        assert_eq!(ok("{{ s | b64encode }}", ctx.clone()), "aGVsbG8Kd29ybGQ=");
        assert_eq!(ok("{{ b64encode(s) }}", ctx.clone()), "aGVsbG8Kd29ybGQ=");
        assert_eq!(ok("{{ n | b64encode | b64decode }}", ctx.clone()), "42");
        assert_eq!(ok("{{ b | b64encode | b64decode }}", ctx.clone()), "true");
        assert_eq!(
            ok("{{ b64decode('aGVsbG8Kd29ybGQ=') }}", ctx),
            "hello\nworld"
        );
        let e = err("{{ 'not base64!' | b64decode }}", serde_json::json!({}));
        assert!(e.to_string().contains("not valid base64"), "{e}");
        // 0xff 0xfe is not UTF-8.
        let e = err("{{ '//4=' | b64decode }}", serde_json::json!({}));
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let e = err("{{ {'a': 1} | b64encode }}", serde_json::json!({}));
        assert!(
            e.to_string().contains("expected a string, got a map"),
            "{e}"
        );
        let e = err("{{ missing | b64encode }}", serde_json::json!({}));
        assert_eq!(e.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn quote_escapes_like_go() {
        let ctx = serde_json::json!({"s": "a \"b\" \\ c\n\td\u{1}", "n": 3, "z": null});
        assert_eq!(
            ok("{{ s | quote }}", ctx.clone()),
            r#""a \"b\" \\ c\n\td\x01""#
        );
        assert_eq!(ok("{{ quote(n) }}", ctx.clone()), "\"3\"");
        assert_eq!(ok("{{ true | quote }}", ctx.clone()), "\"true\"");
        assert_eq!(ok("[{{ z | quote }}]", ctx.clone()), "[]");
        assert_eq!(ok("{{ 'héllo' | quote }}", ctx), "\"héllo\"");
        // The quoted text is a YAML double-quoted scalar with the same value.
        let yaml: serde_json::Value =
            crate::yaml::from_str(&format!("k: {}", go_quote("a \"b\" \\ c\n\td")), "t").unwrap();
        assert_eq!(yaml["k"], "a \"b\" \\ c\n\td");
    }

    #[test]
    fn required_fails_on_undefined_none_and_empty_even_in_strict_mode() {
        let ctx = serde_json::json!({"z": null, "e": "", "v": "ok", "zero": 0});
        assert_eq!(ok("{{ v | required('v is needed') }}", ctx.clone()), "ok");
        // Sprig-style default (replace empty values too) is `default(x, true)`.
        assert_eq!(ok("{{ z | default('d', true) }}", ctx.clone()), "d");
        assert_eq!(ok("[{{ z | default('d') }}]", ctx.clone()), "[]");
        assert_eq!(
            ok("{{ zero | required('zero is needed') }}", ctx.clone()),
            "0"
        );
        for src in [
            "{{ foo | required('foo is needed') }}",
            "{{ z | required('foo is needed') }}",
            "{{ e | required('foo is needed') }}",
        ] {
            let e = err(src, ctx.clone());
            assert_eq!(e.detail(), Some("foo is needed"), "{src}");
        }
        let e = env(false)
            .render_str("{{ foo | required('foo is needed') }}", ())
            .unwrap_err();
        assert_eq!(e.detail(), Some("foo is needed"));
    }

    #[test]
    fn sha256sum_is_hex() {
        assert_eq!(
            ok("{{ 'abc' | sha256sum }}", serde_json::json!({})),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            ok("{{ sha256sum('') }}", serde_json::json!({})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn semver_compare_accepts_go_style_constraints() {
        let ctx = serde_json::json!({"k": "v1.34.0", "old": "1.29.3", "short": "1.31"});
        let cases = [
            ("semver_compare(k, '>=1.30')", "true"),
            ("semver_compare(k, '>=1.30.0, <1.35')", "true"),
            ("semver_compare(k, '>=1.30.0, <1.34')", "false"),
            ("semver_compare(old, '>=1.30')", "false"),
            ("semver_compare(old, '< 1.30')", "true"),
            ("semver_compare(old, '>= 1.29 < 1.30')", "true"),
            ("semver_compare(short, '=1.31')", "true"),
            ("semver_compare(short, '1.31.x')", "true"),
            ("semver_compare(k, '!=1.34.0')", "false"),
            ("semver_compare(k, '<1.30 || >=1.34')", "true"),
            ("semver_compare(k, '~1.34.0')", "true"),
            ("semver_compare(k, '^1.30')", "true"),
            ("semver_compare(k, '>=v1.34.0')", "true"),
            ("k | semver_compare('>1.33')", "true"),
        ];
        for (expr, want) in cases {
            assert_eq!(
                ok(&format!("{{{{ {expr} }}}}"), ctx.clone()),
                want,
                "{expr}"
            );
        }
        let e = err("{{ semver_compare('banana', '>=1.0') }}", ctx.clone());
        assert!(e.to_string().contains("not a semantic version"), "{e}");
        for bad in ["'>>1.0'", "''", "'>='", "'>=1.0 ||'"] {
            let e = err(&format!("{{{{ semver_compare(k, {bad}) }}}}"), ctx.clone());
            assert!(
                e.to_string().contains("not a valid version constraint"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn conversions_round_trip() {
        let json = serde_json::json!({
            "b": true, "i": -3, "u": u64::MAX, "f": 1.5, "s": "x", "n": null,
            "l": [1, {"z": 1, "a": 2}], "m": {}
        });
        let value = to_value(&json);
        assert_eq!(to_json(&value).unwrap(), json);
        // Order of keys survives both ways.
        let keys: Vec<_> = to_json(&value).unwrap()["l"][1]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["z", "a"]);
        assert!(to_json(&Value::from_function(|| 1)).is_err());
    }

    #[test]
    fn sprig_hints() {
        assert_eq!(sprig_hint("toYaml"), Some("toyaml"));
        assert_eq!(sprig_hint("b64enc"), Some("b64encode"));
        assert_eq!(sprig_hint("whatever"), None);
    }
}
