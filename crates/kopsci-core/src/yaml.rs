//! YAML reading and writing: one place that turns text into values with
//! `file:line:column` errors, and values into text a YAML 1.1 reader (kOps)
//! reads back identically.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{Error, Result};

/// Parser options shared by every YAML read. Legacy octal numbers follow
/// YAML 1.1 (kOps reads values with a YAML 1.1 parser); duplicate keys are
/// errors (the serde-saphyr default), because a silently dropped key is a
/// silently changed cluster.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options
}

/// Converts a serde-saphyr error into [`Error::Yaml`] without the source
/// snippet: the snippet would echo input lines, which may hold secrets.
fn yaml_error(origin: &str, err: &serde_saphyr::Error) -> Error {
    let bare = err.without_snippet();
    let (line, column) = bare
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut message = bare.to_string();
    // serde-saphyr prefixes "error: line L column C: "; the location is
    // already in our own prefix.
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    let prefix = format!("line {line} column {column}: ");
    if let Some(rest) = message.strip_prefix(&prefix) {
        message = rest.to_string();
    }
    Error::Yaml {
        origin: origin.to_string(),
        line,
        column,
        message: message.lines().next().unwrap_or_default().to_string(),
    }
}

/// Parses one YAML document. `origin` names the input in errors (usually a
/// path). An empty document parses as `null`.
pub fn from_str<T: DeserializeOwned>(src: &str, origin: &str) -> Result<T> {
    serde_saphyr::from_str_with_options(src, options()).map_err(|e| yaml_error(origin, &e))
}

/// Writes a value as a YAML document ending in a newline. Strings a YAML 1.1
/// reader would take for another type (`yes`, `on`, `0755`, `1.10`) are
/// quoted.
pub fn to_string<T: Serialize>(value: &T) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Never fold long one-line strings (ARNs, URLs) into `>-` blocks: the
    // output should read like the manifests users write by hand.
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(value, options)
        .map_err(|e| Error::YamlWrite(e.to_string()))
}
