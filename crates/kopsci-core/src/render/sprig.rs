//! Go template and Sprig semantics for templates converted by `kopsci
//! migrate`: the filters and functions the converted Jinja calls where
//! kopsci's own helpers behave differently from what `kops toolbox
//! template` did (`kops_indent` keeps the trailing newline, `sprig_nindent`
//! pads empty lines, `go_range` visits a map in sorted key order, …).
//!
//! Naming: `go_*` for Go's built-ins and template behaviour, `sprig_*` for
//! Sprig's functions, `kops_*` for kOps' own. Each follows its Go original on
//! every input kOps accepts; the differences are listed in docs/migrate.md.
//! In strict mode (`--fail-on-missing`) an undefined argument fails, as a
//! missing key does under kOps' `missingkey=error`; in lenient mode it is
//! Go's nil. Error messages name the helper and the kind of problem, never a
//! value.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use indexmap::IndexMap;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

/// Registers the compatibility filters and functions on `env`.
pub(crate) fn register(env: &mut Environment<'_>) {
    env.add_function("go_root", go_root);
    env.add_filter("go_range", go_range);
    env.add_filter("go_items", go_items);
    env.add_filter("go_path", go_path);
    env.add_filter("go_len", go_len);
    env.add_function("go_index", go_index);
    env.add_function("go_print", go_print);
    env.add_function("go_println", go_println);
    env.add_function("go_printf", go_printf);

    env.add_filter("kops_indent", kops_indent);
    env.add_filter("sprig_nindent", sprig_nindent);
    env.add_filter("sprig_default", sprig_default);
    env.add_filter("sprig_quote", |state: &State, v: &Value| {
        sprig_quote(state, Rest(vec![v.clone()]))
    });
    env.add_function("sprig_quote", sprig_quote);
    env.add_filter("sprig_squote", |state: &State, v: &Value| {
        sprig_squote(state, Rest(vec![v.clone()]))
    });
    env.add_function("sprig_squote", sprig_squote);
    env.add_filter("sprig_tojson", |state: &State, v: &Value| {
        json_filter(state, v, JsonStyle::Compact)
    });
    env.add_filter("sprig_toprettyjson", |state: &State, v: &Value| {
        json_filter(state, v, JsonStyle::Pretty)
    });
    env.add_filter("sprig_torawjson", |state: &State, v: &Value| {
        json_filter(state, v, JsonStyle::Raw)
    });
    env.add_filter("sprig_b64enc", sprig_b64enc);
    env.add_filter("sprig_b64dec", sprig_b64dec);
    env.add_filter("sprig_upper", |state: &State, v: &Value| {
        Ok::<_, Error>(map_runes(&string_arg(state, "upper", v)?, true))
    });
    env.add_filter("sprig_lower", |state: &State, v: &Value| {
        Ok::<_, Error>(map_runes(&string_arg(state, "lower", v)?, false))
    });
    env.add_filter(
        "sprig_trim_prefix",
        |state: &State, v: &Value, p: &Value| {
            let s = string_arg(state, "trimPrefix", v)?;
            let p = string_arg(state, "trimPrefix", p)?;
            Ok::<_, Error>(s.strip_prefix(p.as_str()).unwrap_or(&s).to_string())
        },
    );
    env.add_filter(
        "sprig_trim_suffix",
        |state: &State, v: &Value, p: &Value| {
            let s = string_arg(state, "trimSuffix", v)?;
            let p = string_arg(state, "trimSuffix", p)?;
            Ok::<_, Error>(s.strip_suffix(p.as_str()).unwrap_or(&s).to_string())
        },
    );
    env.add_filter("sprig_join", sprig_join);
    env.add_filter("sprig_split", |state: &State, v: &Value, sep: &Value| {
        let parts = go_split(
            &string_arg(state, "split", v)?,
            &string_arg(state, "split", sep)?,
        );
        let map: IndexMap<String, Value> = parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::from(p)))
            .collect();
        Ok::<_, Error>(Value::from_object(GoMap::from(map)))
    });
    env.add_filter(
        "sprig_split_list",
        |state: &State, v: &Value, sep: &Value| {
            let parts = go_split(
                &string_arg(state, "splitList", v)?,
                &string_arg(state, "splitList", sep)?,
            );
            Ok::<_, Error>(Value::from(parts))
        },
    );
    env.add_function("sprig_dict", sprig_dict);
    env.add_function("sprig_set", sprig_set);
    env.add_function("sprig_unset", sprig_unset);
    env.add_filter("sprig_get", |state: &State, d: &Value, k: &Value| {
        let d = data(state, "get", d)?;
        let k = string_arg(state, "get", k)?;
        Ok::<_, Error>(lookup(&d, &k).unwrap_or_else(|| Value::from("")))
    });
    env.add_function("sprig_fail", |message: &Value| -> Result<Value, Error> {
        let text = message
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| go_v(message));
        Err(Error::new(ErrorKind::InvalidOperation, text))
    });
    env.add_filter("sprig_kind_of", |state: &State, v: &Value| {
        Ok::<_, Error>(go_kind(&data(state, "kindOf", v)?))
    });
    env.add_filter("sprig_kind_is", |state: &State, v: &Value, kind: &Value| {
        let kind = string_arg(state, "kindIs", kind)?;
        Ok::<_, Error>(go_kind(&data(state, "kindIs", v)?) == kind)
    });
    env.add_filter("sprig_type_of", |state: &State, v: &Value| {
        Ok::<_, Error>(go_type(&data(state, "typeOf", v)?))
    });
    env.add_filter("sprig_type_is", |state: &State, v: &Value, ty: &Value| {
        let ty = string_arg(state, "typeIs", ty)?;
        Ok::<_, Error>(go_type(&data(state, "typeIs", v)?) == ty)
    });
    env.add_filter("sprig_has", sprig_has);
    env.add_function("sprig_until", |state: &State, n: &Value| {
        let n = int_arg(state, "until", n)?;
        let items: Vec<Value> = if n >= 0 {
            (0..n).map(Value::from).collect()
        } else {
            (n + 1..=0).rev().map(Value::from).collect()
        };
        Ok::<_, Error>(Value::from(items))
    });
    env.add_function("sprig_add", |state: &State, args: Rest<Value>| {
        fold_ints(state, "add", &args, 0, |a, b| a.checked_add(b))
    });
    env.add_function("sprig_mul", |state: &State, args: Rest<Value>| {
        fold_ints(state, "mul", &args, 1, |a, b| a.checked_mul(b))
    });
    env.add_function("sprig_max", |state: &State, args: Rest<Value>| {
        let first = to_int64(state, "max", args.first().unwrap_or(&Value::from(0)))?;
        fold_ints(state, "max", &args, first, |a, b| Some(a.max(b)))
    });
    env.add_function("sprig_min", |state: &State, args: Rest<Value>| {
        let first = to_int64(state, "min", args.first().unwrap_or(&Value::from(0)))?;
        fold_ints(state, "min", &args, first, |a, b| Some(a.min(b)))
    });
    env.add_function("sprig_add1", |state: &State, a: &Value| {
        Ok::<_, Error>(Value::from(to_int64(state, "add1", a)?.wrapping_add(1)))
    });
    env.add_function("sprig_sub", |state: &State, a: &Value, b: &Value| {
        Ok::<_, Error>(Value::from(
            to_int64(state, "sub", a)?.wrapping_sub(to_int64(state, "sub", b)?),
        ))
    });
    env.add_function("sprig_div", |state: &State, a: &Value, b: &Value| {
        let (a, b) = (to_int64(state, "div", a)?, to_int64(state, "div", b)?);
        a.checked_div(b)
            .map(Value::from)
            .ok_or_else(|| fail("div", "integer divide by zero"))
    });
    env.add_function("sprig_mod", |state: &State, a: &Value, b: &Value| {
        let (a, b) = (to_int64(state, "mod", a)?, to_int64(state, "mod", b)?);
        a.checked_rem(b)
            .map(Value::from)
            .ok_or_else(|| fail("mod", "integer divide by zero"))
    });
    env.add_filter("sprig_tostring", |state: &State, v: &Value| {
        Ok::<_, Error>(strval(&data(state, "toString", v)?))
    });
    env.add_filter("sprig_int", |state: &State, v: &Value| {
        Ok::<_, Error>(Value::from(to_int64(state, "int", v)?))
    });
    env.add_filter("sprig_float", sprig_float);
    env.add_filter("sprig_atoi", |state: &State, v: &Value| {
        let s = string_arg(state, "atoi", v)?;
        Ok::<_, Error>(Value::from(go_atoi(&s).unwrap_or(0)))
    });
    env.add_function("sprig_coalesce", |state: &State, args: Rest<Value>| {
        for arg in args.iter() {
            let v = data(state, "coalesce", arg)?;
            if !go_empty(&v) {
                return Ok::<_, Error>(v);
            }
        }
        Ok(Value::from(()))
    });
    env.add_filter("sprig_trunc", |state: &State, v: &Value, n: &Value| {
        let s = string_arg(state, "trunc", v)?;
        let n = int_arg(state, "trunc", n)?;
        let len = s.len() as i64;
        let cut = if n < 0 && len + n > 0 {
            s.get((len + n) as usize..)
        } else if n >= 0 && len > n {
            s.get(..n as usize)
        } else {
            Some(s.as_str())
        };
        cut.map(str::to_string)
            .ok_or_else(|| fail("trunc", "the cut falls inside a multi-byte character"))
    });
    env.add_filter(
        "sprig_substr",
        |state: &State, v: &Value, start: &Value, end: &Value| {
            let s = string_arg(state, "substr", v)?;
            let (start, end) = (
                int_arg(state, "substr", start)?,
                int_arg(state, "substr", end)?,
            );
            let len = s.len() as i64;
            let piece = if start < 0 {
                (end >= 0 && end <= len)
                    .then(|| s.get(..end as usize))
                    .flatten()
            } else if end < 0 || end > len {
                (start <= len).then(|| s.get(start as usize..)).flatten()
            } else {
                (start <= end)
                    .then(|| s.get(start as usize..end as usize))
                    .flatten()
            };
            piece.map(str::to_string).ok_or_else(|| {
                fail(
                    "substr",
                    "the bounds are out of range or inside a multi-byte character",
                )
            })
        },
    );
    env.add_filter("sprig_repeat", |state: &State, v: &Value, n: &Value| {
        let s = string_arg(state, "repeat", v)?;
        let n = int_arg(state, "repeat", n)?;
        if n < 0 {
            return Err(fail("repeat", "negative repeat count"));
        }
        if (s.len() as u64).saturating_mul(n as u64) > 64 << 20 {
            return Err(fail("repeat", "the result would be larger than 64 MiB"));
        }
        Ok(s.repeat(n as usize))
    });
    env.add_filter("sprig_first", |state: &State, v: &Value| {
        let list = list_arg(state, "first", v)?;
        Ok::<_, Error>(list.first().cloned().unwrap_or_else(|| Value::from(())))
    });
    env.add_filter("sprig_last", |state: &State, v: &Value| {
        let list = list_arg(state, "last", v)?;
        Ok::<_, Error>(list.last().cloned().unwrap_or_else(|| Value::from(())))
    });
    env.add_filter("sprig_keys", |state: &State, v: &Value| {
        let mut keys: Vec<String> = map_entries(&data(state, "keys", v)?)
            .ok_or_else(|| fail("keys", "expected a map"))?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        Ok::<_, Error>(Value::from(keys))
    });
    env.add_filter("sprig_sort_alpha", |state: &State, v: &Value| {
        let mut items = strslice(&data(state, "sortAlpha", v)?);
        items.sort();
        Ok::<_, Error>(Value::from(items))
    });
}

// ---------------------------------------------------------------------------
// Go's view of template values

/// An error naming the Go or Sprig function that failed. Never put a value
/// in `what`.
fn fail(function: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{function}: {what}"))
}

fn strict(state: &State) -> bool {
    matches!(
        state.undefined_behavior(),
        UndefinedBehavior::Strict | UndefinedBehavior::SemiStrict
    )
}

/// An argument as Go sees it: undefined fails in strict mode (kOps'
/// `missingkey=error` fails on the lookup) and is nil otherwise.
fn data(state: &State, _function: &str, value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        if strict(state) {
            return Err(Error::from(ErrorKind::UndefinedError));
        }
        return Ok(Value::from(()));
    }
    Ok(value.clone())
}

/// A Go `string` parameter: anything else is an error, as Go's template
/// engine refuses to pass it.
fn string_arg(state: &State, function: &str, value: &Value) -> Result<String, Error> {
    let value = data(state, function, value)?;
    match value.as_str() {
        Some(s) if value.kind() == ValueKind::String => Ok(s.to_string()),
        _ => Err(fail(
            function,
            format_args!("expected a string, got {}", go_type(&value)),
        )),
    }
}

/// A Go `int` parameter.
fn int_arg(state: &State, function: &str, value: &Value) -> Result<i64, Error> {
    let value = data(state, function, value)?;
    if value.is_integer()
        && let Some(i) = value.as_i64()
    {
        return Ok(i);
    }
    Err(fail(
        function,
        format_args!("expected an integer, got {}", go_type(&value)),
    ))
}

fn list_arg(state: &State, function: &str, value: &Value) -> Result<Vec<Value>, Error> {
    let value = data(state, function, value)?;
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => Ok(value
            .try_iter()
            .map_err(|_| fail(function, "the list cannot be read"))?
            .collect()),
        _ => Err(fail(
            function,
            format_args!("expected a list, got {}", go_type(&value)),
        )),
    }
}

/// A number's value: `Some(Ok(int))`, `Some(Err(float))`, or `None`.
fn number(value: &Value) -> Option<Result<i64, f64>> {
    if value.kind() != ValueKind::Number {
        return None;
    }
    if value.is_integer()
        && let Some(i) = value.as_i64()
    {
        return Some(Ok(i));
    }
    f64::try_from(value.clone()).ok().map(Err)
}

/// The entries of a map (template map or [`GoMap`]), in their order.
fn map_entries(value: &Value) -> Option<Vec<(String, Value)>> {
    if let Some(map) = value.downcast_object::<GoMap>() {
        return Some(map.snapshot());
    }
    if value.kind() != ValueKind::Map {
        return None;
    }
    let keys = value.try_iter().ok()?;
    let mut out = Vec::new();
    for key in keys {
        let item = value.get_item(&key).ok()?;
        let key = match key.as_str() {
            Some(s) => s.to_string(),
            None => go_v(&key),
        };
        out.push((key, item));
    }
    Some(out)
}

fn sorted_entries(value: &Value) -> Option<Vec<(String, Value)>> {
    let mut entries = map_entries(value)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(entries)
}

fn lookup(map: &Value, key: &str) -> Option<Value> {
    if let Some(map) = map.downcast_object::<GoMap>() {
        return map.get(key);
    }
    if map.kind() != ValueKind::Map {
        return None;
    }
    map.get_item(&Value::from(key))
        .ok()
        .filter(|v| !v.is_undefined())
}

/// Go's reflect kind, as Sprig's `kindOf` names it. Every number is a
/// `float64`: kOps reads values files into floats.
fn go_kind(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => "invalid",
        ValueKind::Bool => "bool",
        ValueKind::Number => "float64",
        ValueKind::String => "string",
        ValueKind::Seq | ValueKind::Iterable => "slice",
        ValueKind::Map => "map",
        _ => "invalid",
    }
    .to_string()
}

/// Go's type name, as Sprig's `typeOf` and `fmt`'s error verbs name it.
fn go_type(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => "<nil>",
        ValueKind::Bool => "bool",
        ValueKind::Number => "float64",
        ValueKind::String => "string",
        ValueKind::Seq | ValueKind::Iterable => "[]interface {}",
        ValueKind::Map => "map[string]interface {}",
        _ => "<nil>",
    }
    .to_string()
}

/// Sprig's `empty`, Go's truth inverted: nil, false, 0, and empty strings,
/// lists and maps.
fn go_empty(value: &Value) -> bool {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => true,
        ValueKind::Bool => !value.is_true(),
        ValueKind::Number => !value.is_true(),
        ValueKind::String => value.as_str().is_none_or(str::is_empty),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => value.len() == Some(0),
        _ => false,
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the
/// shortest representation, in `e` notation when the exponent is below -4
/// or 6 and above (`1e+06`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    let sci = format!("{f:e}");
    let exp = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse::<i32>().ok())
        .unwrap_or(exp);
    if !(-4..6).contains(&exp) {
        go_exponent(&sci)
    } else {
        format!("{f}")
    }
}

/// Rust's `1.5e-7` written the Go way, `1.5e-07`.
fn go_exponent(sci: &str) -> String {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Go's `%v` of a value: `[a b]` for lists, `map[k:v]` with sorted keys
/// for maps, `<nil>` for nil.
fn go_v(value: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, value, 0);
    out
}

fn write_v(out: &mut String, value: &Value, depth: usize) {
    if depth > 256 {
        out.push_str("...");
        return;
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("<nil>"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => match number(value) {
            Some(Ok(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Err(f)) => out.push_str(&go_float(f)),
            None => out.push_str(&value.to_string()),
        },
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Map => {
            out.push_str("map[");
            for (i, (k, v)) in sorted_entries(value).unwrap_or_default().iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, v, depth + 1);
            }
            out.push(']');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    write_v(out, &item, depth + 1);
                }
            }
            out.push(']');
        }
        _ => out.push_str(&value.to_string()),
    }
}

/// Sprig's `strval`: strings as they are, anything else as `%v`.
fn strval(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => go_v(value),
    }
}

/// Sprig's `strslice`: a list's items as strings, nils dropped; a non-list
/// is a one-item list (nil an empty one).
fn strslice(value: &Value) -> Vec<String> {
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()
            .map(|items| {
                items
                    .filter(|i| !i.is_none() && !i.is_undefined())
                    .map(|i| strval(&i))
                    .collect()
            })
            .unwrap_or_default(),
        ValueKind::None | ValueKind::Undefined => Vec::new(),
        _ => vec![strval(value)],
    }
}

/// Go's `strings.Split`: an empty separator splits into characters.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(str::to_string).collect()
}

/// Go's `strings.ToUpper`/`ToLower`: rune by rune with the simple case
/// mapping, so `ß` stays `ß` (Rust's full mapping would give `SS`).
fn map_runes(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            if !upper && c == '\u{130}' {
                return 'i';
            }
            let mut mapped: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            if mapped.len() == 1 {
                mapped.remove(0)
            } else {
                c
            }
        })
        .collect()
}

/// `cast.ToInt64`, which Sprig's math uses: floats truncate, strings parse
/// (0 when they do not), booleans are 1 and 0, nil is 0.
fn to_int64(state: &State, function: &str, value: &Value) -> Result<i64, Error> {
    let value = data(state, function, value)?;
    Ok(match value.kind() {
        ValueKind::Number => match number(&value) {
            Some(Ok(i)) => i,
            Some(Err(f)) if f.is_finite() => f.trunc() as i64,
            _ => 0,
        },
        ValueKind::String => go_atoi_base0(value.as_str().unwrap_or_default()).unwrap_or(0),
        ValueKind::Bool => i64::from(value.is_true()),
        _ => 0,
    })
}

/// `strconv.ParseInt(s, 0, 64)` after cast's trimming of a zero decimal
/// part (`"5.0"` → 5).
fn go_atoi_base0(s: &str) -> Option<i64> {
    let s = match s.split_once('.') {
        Some((int, frac)) if !int.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        _ => s,
    };
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = digits.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let value = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse::<i64>().ok()?
    };
    Some(if neg { -value } else { value })
}

/// `strconv.Atoi`: decimal only.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn fold_ints(
    state: &State,
    function: &str,
    args: &[Value],
    init: i64,
    op: impl Fn(i64, i64) -> Option<i64>,
) -> Result<Value, Error> {
    let mut acc = init;
    for arg in args {
        let n = to_int64(state, function, arg)?;
        acc = op(acc, n).ok_or_else(|| fail(function, "integer overflow"))?;
    }
    Ok(Value::from(acc))
}

fn sprig_float(state: &State, value: &Value) -> Result<Value, Error> {
    let value = data(state, "float64", value)?;
    Ok(Value::from(match value.kind() {
        ValueKind::Number => match number(&value) {
            Some(Ok(i)) => i as f64,
            Some(Err(f)) => f,
            None => 0.0,
        },
        ValueKind::String => value
            .as_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(0.0),
        ValueKind::Bool => f64::from(u8::from(value.is_true())),
        _ => 0.0,
    }))
}

// ---------------------------------------------------------------------------
// Go template behaviour

/// `$` of a converted file: the file's data as one map. Called first thing
/// in the file, when the known variables are exactly the data (plus the
/// environment's functions, which are not data).
fn go_root(state: &State) -> Value {
    let mut map: IndexMap<Value, Value> = IndexMap::new();
    for name in state.known_variables() {
        if let Some(value) = state.lookup(&name) {
            let is_data = matches!(
                value.kind(),
                ValueKind::None
                    | ValueKind::Bool
                    | ValueKind::Number
                    | ValueKind::String
                    | ValueKind::Bytes
                    | ValueKind::Seq
                    | ValueKind::Map
            );
            if is_data {
                map.insert(Value::from(name.as_ref()), value);
            }
        }
    }
    Value::from(map)
}

/// What `range` iterates: a list's items, a map's values in key order
/// (sorted unless `sorted=false`), `0..n` for an integer; nothing for nil.
fn range_pairs(
    state: &State,
    value: &Value,
    kwargs: &Kwargs,
    function: &str,
) -> Result<Vec<(Value, Value)>, Error> {
    let sorted: Option<bool> = kwargs.get("sorted")?;
    kwargs.assert_all_used()?;
    let value = data(state, function, value)?;
    Ok(match value.kind() {
        ValueKind::None => Vec::new(),
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()
            .map_err(|_| fail("range", "the list cannot be read"))?
            .enumerate()
            .map(|(i, v)| (Value::from(i), v))
            .collect(),
        ValueKind::Map => {
            let entries = if sorted.unwrap_or(true) {
                sorted_entries(&value)
            } else {
                map_entries(&value)
            };
            entries
                .ok_or_else(|| fail("range", "the map cannot be read"))?
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect()
        }
        ValueKind::Number if value.is_integer() => {
            let n = value.as_i64().unwrap_or(0);
            (0..n.max(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect()
        }
        _ => {
            return Err(fail(
                "range",
                format_args!(
                    "range can't iterate over a value of type {}",
                    go_type(&value)
                ),
            ));
        }
    })
}

/// `{{ range .x }}` / `{{ range $v := .x }}`: the elements.
fn go_range(state: &State, value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let pairs = range_pairs(state, value, &kwargs, "range")?;
    Ok(Value::from(
        pairs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    ))
}

/// `{{ range $k, $v := .x }}`: `[key or index, element]` pairs.
fn go_items(state: &State, value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    if value.is_integer() {
        return Err(fail(
            "range",
            "can't use two variables to range over an integer",
        ));
    }
    let pairs = range_pairs(state, value, &kwargs, "range")?;
    Ok(Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| Value::from(vec![k, v]))
            .collect::<Vec<_>>(),
    ))
}

/// `.a.b.c` under `missingkey=default`: a missing key anywhere gives "no
/// value"; a field of nil or of a non-map fails, as in Go.
fn go_path(value: &Value, path: Rest<String>) -> Result<Value, Error> {
    let mut current = value.clone();
    for field in path.iter() {
        match current.kind() {
            ValueKind::Undefined => return Ok(Value::UNDEFINED),
            ValueKind::None => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("nil pointer evaluating interface {{}}.{field}"),
                ));
            }
            ValueKind::Map => {
                current = lookup(&current, field).unwrap_or(Value::UNDEFINED);
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("can't evaluate field {field} in type {}", go_type(&current)),
                ));
            }
        }
    }
    Ok(current)
}

/// Go's `len`: bytes of a string, items of a list or map.
fn go_len(state: &State, value: &Value) -> Result<Value, Error> {
    let value = data(state, "len", value)?;
    match value.kind() {
        ValueKind::String => Ok(Value::from(value.as_str().unwrap_or_default().len())),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => value
            .len()
            .map(Value::from)
            .ok_or_else(|| fail("len", "the length is unknown")),
        _ => Err(fail("len", format_args!("len of {}", go_type(&value)))),
    }
}

/// Go's `index`: a missing map key is nil (never an error, whatever
/// `missingkey` says); a list index out of range is an error.
fn go_index(state: &State, item: &Value, keys: Rest<Value>) -> Result<Value, Error> {
    let mut item = data(state, "index", item)?;
    if item.is_none() {
        return Err(fail("index", "index of untyped nil"));
    }
    for key in keys.iter() {
        let key = data(state, "index", key)?;
        match item.kind() {
            ValueKind::None => return Err(fail("index", "index of nil pointer")),
            ValueKind::Seq | ValueKind::Iterable | ValueKind::String => {
                let Some(i) = key.as_i64().filter(|_| key.is_integer()) else {
                    return Err(fail(
                        "index",
                        format_args!("cannot index slice/array with type {}", go_type(&key)),
                    ));
                };
                if item.kind() == ValueKind::String {
                    let bytes = item.as_str().unwrap_or_default().as_bytes();
                    let byte = usize::try_from(i).ok().and_then(|i| bytes.get(i));
                    match byte {
                        Some(b) => item = Value::from(*b),
                        None => return Err(fail("index", format_args!("index out of range: {i}"))),
                    }
                } else {
                    let items: Vec<Value> = item
                        .try_iter()
                        .map_err(|_| fail("index", "the list cannot be read"))?
                        .collect();
                    match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                        Some(v) => item = v.clone(),
                        None => return Err(fail("index", format_args!("index out of range: {i}"))),
                    }
                }
            }
            ValueKind::Map => {
                let Some(k) = key.as_str().filter(|_| key.kind() == ValueKind::String) else {
                    return Err(fail(
                        "index",
                        format_args!("value has type {}; should be string", go_type(&key)),
                    ));
                };
                item = lookup(&item, k).unwrap_or_else(|| Value::from(()));
            }
            _ => {
                return Err(fail(
                    "index",
                    format_args!("can't index item of type {}", go_type(&item)),
                ));
            }
        }
    }
    Ok(item)
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn go_print(state: &State, args: Rest<Value>) -> Result<String, Error> {
    let mut out = String::new();
    let mut previous_string = true;
    for (i, arg) in args.iter().enumerate() {
        let arg = data(state, "print", arg)?;
        let is_string = arg.kind() == ValueKind::String;
        if i > 0 && !is_string && !previous_string {
            out.push(' ');
        }
        out.push_str(&strval(&arg));
        previous_string = is_string;
    }
    Ok(out)
}

/// `fmt.Sprintln`: spaces between all operands, and a newline.
fn go_println(state: &State, args: Rest<Value>) -> Result<String, Error> {
    let mut parts = Vec::new();
    for arg in args.iter() {
        parts.push(strval(&data(state, "println", arg)?));
    }
    Ok(parts.join(" ") + "\n")
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %t %f %e %g %x
/// %X %o %b %c %%`, with flags, width and precision; a wrong type or a
/// missing argument prints Go's `%!d(string=…)` / `%!d(MISSING)`.
fn go_printf(state: &State, format: &Value, args: Rest<Value>) -> Result<String, Error> {
    let format = string_arg(state, "printf", format)?;
    let mut values = Vec::with_capacity(args.len());
    for arg in args.iter() {
        values.push(data(state, "printf", arg)?);
    }
    Ok(sprintf(&format, &values))
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        spec.width = width.parse().ok();
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut precision = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                precision.push(d);
                chars.next();
            }
            spec.precision = Some(precision.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let text = format_verb(verb, &spec, arg);
        out.push_str(&pad(&text, &spec, verb));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", go_type(a), go_v(a)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn bad_verb(verb: char, arg: &Value) -> String {
    if arg.is_none() || arg.is_undefined() {
        return format!("%!{verb}(<nil>)");
    }
    format!("%!{verb}({}={})", go_type(arg), go_v(arg))
}

fn format_verb(verb: char, spec: &Spec, arg: &Value) -> String {
    match arg.kind() {
        ValueKind::Seq | ValueKind::Iterable if verb != 'v' || !spec.sharp => {
            // Go formats a slice item by item with the same verb.
            let items: Vec<String> = arg
                .try_iter()
                .map(|it| it.map(|i| format_verb(verb, spec, &i)).collect())
                .unwrap_or_default();
            return format!("[{}]", items.join(" "));
        }
        ValueKind::Map if verb != 'v' => {
            let items: Vec<String> = sorted_entries(arg)
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{}:{}", k, format_verb(verb, spec, v)))
                .collect();
            return format!("map[{}]", items.join(" "));
        }
        _ => {}
    }
    match verb {
        'v' => match number(arg) {
            Some(Ok(i)) => signed(i.to_string(), i < 0, spec),
            Some(Err(f)) if spec.precision.is_some() => float_verb('g', spec, f),
            Some(Err(f)) => signed(go_float(f), f < 0.0, spec),
            None if arg.kind() == ValueKind::String && spec.sharp => {
                crate::render::functions::go_quote(arg.as_str().unwrap_or_default())
            }
            None => go_v(arg),
        },
        's' => match arg.kind() {
            ValueKind::String => truncate(arg.as_str().unwrap_or_default(), spec.precision),
            _ => bad_verb(verb, arg),
        },
        'q' => match arg.kind() {
            ValueKind::String if spec.sharp && !arg.as_str().unwrap_or_default().contains('`') => {
                format!("`{}`", arg.as_str().unwrap_or_default())
            }
            ValueKind::String => {
                crate::render::functions::go_quote(arg.as_str().unwrap_or_default())
            }
            ValueKind::Number => match number(arg) {
                Some(Ok(i)) => match u32::try_from(i).ok().and_then(char::from_u32) {
                    Some(c) => {
                        let quoted = crate::render::functions::go_quote(&c.to_string());
                        format!("'{}'", &quoted[1..quoted.len() - 1].replace("\\\"", "\""))
                    }
                    None => "'\u{FFFD}'".to_string(),
                },
                _ => bad_verb(verb, arg),
            },
            _ => bad_verb(verb, arg),
        },
        't' => match arg.kind() {
            ValueKind::Bool => (if arg.is_true() { "true" } else { "false" }).to_string(),
            _ => bad_verb(verb, arg),
        },
        'd' | 'x' | 'X' | 'o' | 'b' | 'c' => match number(arg) {
            Some(Ok(i)) => int_verb(verb, spec, i),
            Some(Err(f)) if matches!(verb, 'x' | 'X' | 'b') => {
                // Go prints floats in hex/binary exponent form; rare enough
                // to refuse rather than imitate.
                bad_verb(verb, &Value::from(f))
            }
            _ if arg.kind() == ValueKind::String && matches!(verb, 'x' | 'X') => {
                let s = arg.as_str().unwrap_or_default();
                let mut hex = String::with_capacity(s.len() * 2);
                for b in s.bytes() {
                    if verb == 'x' {
                        let _ = write!(hex, "{b:02x}");
                    } else {
                        let _ = write!(hex, "{b:02X}");
                    }
                }
                hex
            }
            _ => bad_verb(verb, arg),
        },
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match number(arg) {
            Some(Err(f)) => float_verb(verb, spec, f),
            _ => bad_verb(verb, arg),
        },
        _ => format!("%!{verb}({}={})", go_type(arg), go_v(arg)),
    }
}

fn truncate(s: &str, precision: Option<usize>) -> String {
    match precision {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn signed(digits: String, negative: bool, spec: &Spec) -> String {
    if negative {
        if digits.starts_with('-') {
            digits
        } else {
            format!("-{digits}")
        }
    } else if spec.plus {
        format!("+{digits}")
    } else if spec.space {
        format!(" {digits}")
    } else {
        digits
    }
}

fn int_verb(verb: char, spec: &Spec, i: i64) -> String {
    let magnitude = i.unsigned_abs();
    let mut body = match verb {
        'd' => magnitude.to_string(),
        'x' => format!("{magnitude:x}"),
        'X' => format!("{magnitude:X}"),
        'o' => format!("{magnitude:o}"),
        'b' => format!("{magnitude:b}"),
        _ => {
            return u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}')
                .to_string();
        }
    };
    if let Some(p) = spec.precision
        && body.len() < p
    {
        body = format!("{}{body}", "0".repeat(p - body.len()));
    }
    let prefix = match (spec.sharp, verb) {
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        (true, 'o') => "0",
        _ => "",
    };
    signed(format!("{prefix}{body}"), i < 0, spec)
}

fn float_verb(verb: char, spec: &Spec, f: f64) -> String {
    if !f.is_finite() {
        return signed(go_float(f), f < 0.0, spec);
    }
    let text = match verb {
        'f' | 'F' => format!("{:.*}", spec.precision.unwrap_or(6), f),
        'e' | 'E' => {
            let t = go_exponent(&format!("{:.*e}", spec.precision.unwrap_or(6), f));
            if verb == 'E' { t.to_uppercase() } else { t }
        }
        _ => match spec.precision {
            None => go_float_g(f),
            Some(p) => {
                let p = p.max(1);
                let sci = format!("{:.*e}", p - 1, f);
                let exp: i32 = sci
                    .split_once('e')
                    .and_then(|(_, e)| e.parse().ok())
                    .unwrap_or(0);
                let t = if exp < -4 || exp >= p as i32 {
                    let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
                    let m = if m.contains('.') {
                        m.trim_end_matches('0').trim_end_matches('.')
                    } else {
                        m
                    };
                    go_exponent(&format!("{m}e{e}"))
                } else {
                    let decimals = (p as i32 - 1 - exp).max(0) as usize;
                    let fixed = format!("{f:.decimals$}");
                    if fixed.contains('.') {
                        fixed
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_string()
                    } else {
                        fixed
                    }
                };
                if verb == 'G' { t.to_uppercase() } else { t }
            }
        },
    };
    signed(text, f < 0.0 || (f == 0.0 && f.is_sign_negative()), spec)
}

/// `%g` with the shortest precision, the same as `%v`.
fn go_float_g(f: f64) -> String {
    go_float(f)
}

fn pad(text: &str, spec: &Spec, verb: char) -> String {
    let Some(width) = spec.width else {
        return text.to_string();
    };
    let len = text.chars().count();
    if len >= width {
        return text.to_string();
    }
    let fill = width - len;
    if spec.minus {
        return format!("{text}{}", " ".repeat(fill));
    }
    let numeric = matches!(
        verb,
        'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'x' | 'X' | 'o' | 'b' | 'v'
    );
    if spec.zero
        && numeric
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || "+- ".contains(c))
    {
        let (sign, rest) = match text.chars().next() {
            Some(c @ ('+' | '-' | ' ')) => (c.to_string(), &text[1..]),
            _ => (String::new(), text),
        };
        return format!("{sign}{}{rest}", "0".repeat(fill));
    }
    format!("{}{text}", " ".repeat(fill))
}

// ---------------------------------------------------------------------------
// kOps' and Sprig's functions

/// kOps' `indent`: every line but the first, and but empty ones, gets
/// `width` spaces; a trailing newline stays.
fn kops_indent(state: &State, content: &Value, width: &Value) -> Result<String, Error> {
    let content = string_arg(state, "indent", content)?;
    let width = int_arg(state, "indent", width)?;
    let pad = " ".repeat(usize::try_from(width).unwrap_or(0));
    let mut out = String::with_capacity(content.len());
    for (i, line) in content.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(line);
    }
    Ok(out)
}

/// Sprig's `nindent`: a newline, then every line indented, empty ones and
/// the one after a trailing newline too.
fn sprig_nindent(state: &State, content: &Value, width: &Value) -> Result<String, Error> {
    let content = string_arg(state, "nindent", content)?;
    let width = int_arg(state, "nindent", width)?;
    let pad = " ".repeat(usize::try_from(width).unwrap_or(0));
    Ok(format!(
        "\n{pad}{}",
        content.replace('\n', &format!("\n{pad}"))
    ))
}

/// Sprig's `default`: `fallback` when `given` is empty (nil, false, 0, "",
/// empty list or map).
fn sprig_default(state: &State, given: &Value, fallback: &Value) -> Result<Value, Error> {
    let given = data(state, "default", given)?;
    if go_empty(&given) {
        data(state, "default", fallback)
    } else {
        Ok(given)
    }
}

/// Sprig's `quote`: each non-nil argument as Go's `%q` of its text,
/// separated by spaces.
fn sprig_quote(state: &State, args: Rest<Value>) -> Result<String, Error> {
    let mut parts = Vec::new();
    for arg in args.iter() {
        let arg = data(state, "quote", arg)?;
        if !arg.is_none() {
            parts.push(crate::render::functions::go_quote(&strval(&arg)));
        }
    }
    Ok(parts.join(" "))
}

/// Sprig's `squote`: each non-nil argument in single quotes, unescaped.
fn sprig_squote(state: &State, args: Rest<Value>) -> Result<String, Error> {
    let mut parts = Vec::new();
    for arg in args.iter() {
        let arg = data(state, "squote", arg)?;
        if !arg.is_none() {
            parts.push(format!("'{}'", strval(&arg)));
        }
    }
    Ok(parts.join(" "))
}

fn sprig_b64enc(state: &State, value: &Value) -> Result<String, Error> {
    let s = string_arg(state, "b64enc", value)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
}

/// Sprig's `b64dec`. Sprig returns the decoder's error message as the
/// result; a manifest holding that text is never what was meant, so here
/// it is an error.
fn sprig_b64dec(state: &State, value: &Value) -> Result<String, Error> {
    let s = string_arg(state, "b64dec", value)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| fail("b64dec", "the input is not valid base64 (Sprig would print its error text into the manifest)"))?;
    String::from_utf8(bytes).map_err(|_| fail("b64dec", "the decoded data is not UTF-8 text"))
}

fn sprig_join(state: &State, list: &Value, sep: &Value) -> Result<String, Error> {
    let sep = string_arg(state, "join", sep)?;
    let list = data(state, "join", list)?;
    Ok(strslice(&list).join(&sep))
}

fn sprig_has(state: &State, haystack: &Value, needle: &Value) -> Result<bool, Error> {
    let haystack = data(state, "has", haystack)?;
    let needle = data(state, "has", needle)?;
    match haystack.kind() {
        ValueKind::None => Ok(false),
        ValueKind::Seq | ValueKind::Iterable => Ok(haystack
            .try_iter()
            .map_err(|_| fail("has", "the list cannot be read"))?
            .any(|item| item == needle)),
        _ => Err(fail(
            "has",
            format_args!("cannot find has on type {}", go_type(&haystack)),
        )),
    }
}

/// Sprig's `dict`: keys are the `%v` text of the odd arguments; a lone last
/// key gets `""`. The map can be changed with `sprig_set`/`sprig_unset`.
fn sprig_dict(state: &State, args: Rest<Value>) -> Result<Value, Error> {
    let mut map = IndexMap::new();
    for pair in args.chunks(2) {
        let key = strval(&data(state, "dict", &pair[0])?);
        let value = match pair.get(1) {
            Some(v) => data(state, "dict", v)?,
            None => Value::from(""),
        };
        map.insert(key, value);
    }
    Ok(Value::from_object(GoMap::from(map)))
}

fn sprig_set(state: &State, map: &Value, key: &Value, value: &Value) -> Result<Value, Error> {
    let key = string_arg(state, "set", key)?;
    let value = data(state, "set", value)?;
    let Some(target) = map.downcast_object::<GoMap>() else {
        return Err(fail(
            "set",
            "only maps made with dict can be changed (kopsci's values are read-only): build a new map with dict and set",
        ));
    };
    target.insert(key, value);
    Ok(map.clone())
}

fn sprig_unset(state: &State, map: &Value, key: &Value) -> Result<Value, Error> {
    let key = string_arg(state, "unset", key)?;
    let Some(target) = map.downcast_object::<GoMap>() else {
        return Err(fail(
            "unset",
            "only maps made with dict can be changed (kopsci's values are read-only)",
        ));
    };
    target.remove(&key);
    Ok(map.clone())
}

// ---------------------------------------------------------------------------
// JSON the way Go's encoding/json writes it

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    /// `json.Marshal`: compact, HTML characters escaped.
    Compact,
    /// `json.MarshalIndent(v, "", "  ")`.
    Pretty,
    /// An encoder without HTML escaping (Sprig's `toRawJson`).
    Raw,
}

/// Sprig's `toJson` family: Go's encoding (map keys sorted, `<>&`
/// escaped except in `toRawJson`). Sprig prints nothing when encoding
/// fails (NaN, infinities).
fn json_filter(state: &State, value: &Value, style: JsonStyle) -> Result<String, Error> {
    let value = data(state, "toJson", value)?;
    let mut out = String::new();
    if write_json(&mut out, &value, style, 0).is_err() {
        return Ok(String::new());
    }
    Ok(out)
}

fn write_json(out: &mut String, value: &Value, style: JsonStyle, depth: usize) -> Result<(), ()> {
    if depth > 256 {
        return Err(());
    }
    let newline = |out: &mut String, level: usize| {
        if style == JsonStyle::Pretty {
            out.push('\n');
            out.push_str(&"  ".repeat(level));
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => match number(value) {
            Some(Ok(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Err(f)) if f.is_finite() => out.push_str(&json_float(f)),
            _ => return Err(()),
        },
        ValueKind::String => json_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Map => {
            let entries = sorted_entries(value).ok_or(())?;
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                json_string(out, k, style);
                out.push(':');
                if style == JsonStyle::Pretty {
                    out.push(' ');
                }
                write_json(out, v, style, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter().map_err(|_| ())?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        _ => return Err(()),
    }
    Ok(())
}

/// Go's float encoding: plain digits from 1e-6 up to 1e21, `e` notation
/// outside with a one-digit negative exponent where it fits (`1e-7`).
fn json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        match exp.strip_prefix('-') {
            Some(d) => format!("{mantissa}e-{d}"),
            None => format!("{mantissa}e+{exp}"),
        }
    } else {
        format!("{f}")
    }
}

fn json_string(out: &mut String, s: &str, style: JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if style != JsonStyle::Raw => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Changeable maps

/// A map Sprig's `set`/`unset` can change in place, shared by every
/// variable that holds it, as a Go map is.
#[derive(Debug, Default)]
pub(crate) struct GoMap {
    entries: Mutex<IndexMap<String, Value>>,
}

impl From<IndexMap<String, Value>> for GoMap {
    fn from(entries: IndexMap<String, Value>) -> Self {
        GoMap {
            entries: Mutex::new(entries),
        }
    }
}

impl GoMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexMap<String, Value>> {
        // A panic while holding the lock cannot leave the map half-changed
        // (each change is one IndexMap call), so a poisoned lock is usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Vec<(String, Value)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: String, value: Value) {
        self.lock().insert(key, value);
    }

    fn remove(&self, key: &str) {
        self.lock().shift_remove(key);
    }
}

impl Object for GoMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key.as_str()?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .lock()
            .keys()
            .map(|k| Value::from(k.as_str()))
            .collect();
        Enumerator::Values(keys)
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.lock().len())
    }

    fn custom_cmp(self: &Arc<Self>, other: &minijinja::value::DynObject) -> Option<Ordering> {
        let other = other.downcast_ref::<GoMap>()?;
        (std::ptr::eq(self.as_ref(), other)).then_some(Ordering::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(strict: bool) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_debug(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(if strict {
            UndefinedBehavior::Strict
        } else {
            UndefinedBehavior::Lenient
        });
        crate::render::functions::register(&mut env);
        register(&mut env);
        env
    }

    fn render(src: &str, ctx: serde_json::Value) -> Result<String, Error> {
        let ctx = crate::render::functions::to_value(&ctx);
        env(true).render_str(src, ctx)
    }

    #[track_caller]
    fn ok(src: &str, ctx: serde_json::Value) -> String {
        render(src, ctx).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn go_float_formatting() {
        let cases = [
            (20.0, "20"),
            (0.5, "0.5"),
            (3.25, "3.25"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (-2.5, "-2.5"),
        ];
        for (f, want) in cases {
            assert_eq!(go_v(&Value::from(f)), want, "{f}");
        }
        assert_eq!(json_float(1e21), "1e+21");
        assert_eq!(json_float(1e-7), "1e-7");
        assert_eq!(json_float(1e6), "1000000");
        assert_eq!(json_float(0.000001), "0.000001");
    }

    #[test]
    fn percent_v_of_collections() {
        let ctx = serde_json::json!({"l": ["a", 1, null, true], "m": {"b": 2, "a": [1, 2]}});
        assert_eq!(
            ok("{{ go_printf('%v', l) }}", ctx.clone()),
            "[a 1 <nil> true]"
        );
        assert_eq!(ok("{{ go_printf('%v', m) }}", ctx), "map[a:[1 2] b:2]");
    }

    #[test]
    fn printf_verbs() {
        let ctx = serde_json::json!({"s": "x\"y", "i": 42, "f": 1.5, "b": true, "n": null});
        let cases = [
            ("%s-%d", "x\"y-42"),
            ("%q", "\"x\\\"y\""),
            ("%5d|%-5d|%05d", "   42|42   |00042"),
            ("%x %X %o %b", "2a 2A 52 101010"),
            ("%.2f %f %e", "1.50 1.500000 1.500000e+00"),
            ("%t %v", "true <nil>"),
            ("%d", "%!d(string=x\"y)"),
            ("%s %s", "x\"y %!s(MISSING)"),
            ("%%", "%"),
        ];
        let args = [
            "s, i",
            "s",
            "i, i, i",
            "i, i, i, i",
            "f, f, f",
            "b, n",
            "s",
            "s",
            "",
        ];
        for ((format, want), args) in cases.iter().zip(args) {
            let src = if args.is_empty() {
                format!("{{{{ go_printf('{format}') }}}}")
            } else {
                format!("{{{{ go_printf('{format}', {args}) }}}}")
            };
            assert_eq!(ok(&src, ctx.clone()), *want, "{format}");
        }
        assert_eq!(
            ok("{{ go_printf('%d', 1, 2) }}", ctx),
            "1%!(EXTRA float64=2)"
        );
    }

    #[test]
    fn kops_indent_and_sprig_nindent() {
        let ctx = serde_json::json!({"t": "a\n\n  \nb\n"});
        // kOps: first line and empty lines untouched, whitespace-only lines
        // indented, trailing newline kept.
        assert_eq!(
            ok("{{ t | kops_indent(2) }}", ctx.clone()),
            "a\n\n    \n  b\n"
        );
        // Sprig: a newline, then every line padded, the empty last one too.
        assert_eq!(
            ok("{{ t | sprig_nindent(2) }}", ctx),
            "\n  a\n  \n    \n  b\n  "
        );
    }

    #[test]
    fn range_sorts_maps_and_indexes_lists() {
        let ctx = serde_json::json!({"m": {"b": 1, "a": 2}, "l": ["x", "y"], "n": null});
        assert_eq!(
            ok(
                "{% for k, v in m | go_items %}{{ k }}={{ v }} {% endfor %}",
                ctx.clone()
            ),
            "a=2 b=1 "
        );
        assert_eq!(
            ok(
                "{% for k, v in m | go_items(sorted=false) %}{{ k }} {% endfor %}",
                ctx.clone()
            ),
            "b a "
        );
        assert_eq!(
            ok(
                "{% for v in m | go_range %}{{ v }}{% endfor %}",
                ctx.clone()
            ),
            "21"
        );
        assert_eq!(
            ok(
                "{% for i, v in l | go_items %}{{ i }}{{ v }}{% endfor %}",
                ctx.clone()
            ),
            "0x1y"
        );
        assert_eq!(
            ok(
                "{% for v in n | go_range %}x{% else %}empty{% endfor %}",
                ctx.clone()
            ),
            "empty"
        );
        assert_eq!(
            ok(
                "{% for i in 3 | go_range %}{{ i }}{% endfor %}",
                ctx.clone()
            ),
            "012"
        );
        let e = render("{% for v in 's' | go_range %}{% endfor %}", ctx.clone()).unwrap_err();
        assert!(e.to_string().contains("range can't iterate"), "{e}");
        let e = render("{% for v in missing | go_range %}{% endfor %}", ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn index_follows_go() {
        let ctx = serde_json::json!({"m": {"a": {"b": 1}}, "l": [10, 20]});
        assert_eq!(ok("{{ go_index(m, 'a', 'b') }}", ctx.clone()), "1");
        assert_eq!(ok("[{{ go_index(m, 'x') }}]", ctx.clone()), "[]");
        assert_eq!(ok("{{ go_index(l, 1) }}", ctx.clone()), "20");
        let e = render("{{ go_index(l, 5) }}", ctx.clone()).unwrap_err();
        assert!(e.to_string().contains("index out of range: 5"), "{e}");
        let e = render("{{ go_index(m, 'x', 'y') }}", ctx).unwrap_err();
        assert!(e.to_string().contains("index of nil pointer"), "{e}");
    }

    #[test]
    fn tojson_is_gos_encoding() {
        let ctx = serde_json::json!({"m": {"b": "<a&b>", "a": [1, 2.5, null]}, "e": {}});
        assert_eq!(
            ok("{{ m | sprig_tojson }}", ctx.clone()),
            r#"{"a":[1,2.5,null],"b":"\u003ca\u0026b\u003e"}"#
        );
        assert_eq!(
            ok("{{ m | sprig_torawjson }}", ctx.clone()),
            r#"{"a":[1,2.5,null],"b":"<a&b>"}"#
        );
        assert_eq!(
            ok("{{ m | sprig_toprettyjson }}", ctx.clone()),
            "{\n  \"a\": [\n    1,\n    2.5,\n    null\n  ],\n  \"b\": \"\\u003ca\\u0026b\\u003e\"\n}"
        );
        assert_eq!(ok("{{ e | sprig_tojson }}", ctx), "{}");
    }

    #[test]
    fn dict_set_mutates_shared_maps() {
        let out = ok(
            "{% set d = sprig_dict('a', 1) %}{% set alias = d %}{% set _ = sprig_set(d, 'b', 2) %}{{ alias | sprig_tojson }} {{ 'b' in alias }} {{ alias | length }}",
            serde_json::json!({}),
        );
        assert_eq!(out, r#"{"a":1,"b":2} true 2"#);
        let e = render("{{ sprig_set(v, 'a', 1) }}", serde_json::json!({"v": {}})).unwrap_err();
        assert!(e.to_string().contains("only maps made with dict"), "{e}");
    }

    #[test]
    fn strings_and_math() {
        let ctx = serde_json::json!({"s": "us-test-1a", "f": 2.7});
        assert_eq!(ok("{{ s | sprig_trunc(-1) }}", ctx.clone()), "a");
        assert_eq!(ok("{{ s | sprig_trunc(2) }}", ctx.clone()), "us");
        assert_eq!(ok("{{ s | sprig_substr(3, -1) }}", ctx.clone()), "test-1a");
        assert_eq!(ok("{{ 'ß' | sprig_upper }}", ctx.clone()), "ß");
        assert_eq!(
            ok("{{ s | sprig_split('-') | sprig_tojson }}", ctx.clone()),
            r#"{"_0":"us","_1":"test","_2":"1a"}"#
        );
        assert_eq!(ok("{{ sprig_add(1, f, '3') }}", ctx.clone()), "6");
        assert_eq!(ok("{{ sprig_until(3) }}", ctx.clone()), "[0,1,2]");
        assert_eq!(
            ok("{{ ['b', none, 1] | sprig_join(',') }}", ctx.clone()),
            "b,1"
        );
        assert_eq!(
            ok("{{ sprig_quote('a', none, 2) }}", ctx.clone()),
            "\"a\" \"2\""
        );
        assert_eq!(ok("{{ 0 | sprig_default('d') }}", ctx.clone()), "d");
        assert_eq!(
            ok(
                "{{ f | sprig_kind_of }} {{ [] | sprig_kind_of }} {{ none | sprig_kind_of }}",
                ctx
            ),
            "float64 slice invalid"
        );
    }

    #[test]
    fn strict_mode_fails_on_undefined_like_missingkey_error() {
        for src in [
            "{{ missing | sprig_default('d') }}",
            "{{ missing | sprig_quote }}",
            "{{ go_index(missing, 'a') }}",
            "{{ missing | go_len }}",
        ] {
            let e = render(src, serde_json::json!({})).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UndefinedError, "{src}");
        }
        let lenient = env(false);
        assert_eq!(
            lenient
                .render_str("{{ missing | sprig_default('d') }}", ())
                .unwrap(),
            "d"
        );
        assert_eq!(
            lenient
                .render_str("[{{ a | go_path('b', 'c') }}]", ())
                .unwrap(),
            "[]"
        );
    }
}
