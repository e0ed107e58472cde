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
/// Errors whose library wording talks about its own options or internals
/// (duplicate keys, budgets, alias limits) get kopsci's words instead.
fn yaml_error(origin: &str, err: &serde_saphyr::Error) -> Error {
    let bare = err.without_snippet();
    let (line, column) = bare
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = plain_message(bare).unwrap_or_else(|| {
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
        // serde's messages may end with the location once more.
        let suffix = format!(" at line {line}, column {column}");
        if let Some(rest) = message.strip_suffix(&suffix) {
            message = rest.to_string();
        }
        message.lines().next().unwrap_or_default().to_string()
    });
    Error::Yaml {
        origin: origin.to_string(),
        line,
        column,
        message,
    }
}

/// What kopsci says instead of serde-saphyr's wording, where that wording
/// would send the user to the library's options.
fn plain_message(err: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    const TOO_BIG: &str = "kopsci refuses YAML this large (anchors and aliases that multiply \
                           each other are the usual cause): write the values out, or split the file";
    Some(match err {
        // The location of the use is ours already; the cause is inside.
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => return plain_message(error),
        E::DuplicateMappingKey { key, .. } => {
            let key = key
                .as_deref()
                .map(|k| format!(" `{}`", k.escape_debug()))
                .unwrap_or_default();
            format!(
                "duplicate key{key}: a key may appear only once in a mapping (a later one would silently replace the earlier); keep one"
            )
        }
        E::Budget { breach, .. } => {
            let what = match breach {
                B::Nodes { nodes } => format!("{nodes} values"),
                B::Events { events } => format!("{events} parser events"),
                B::Aliases { aliases } => format!("{aliases} aliases"),
                B::Anchors { anchors } => format!("{anchors} anchors"),
                B::Depth { depth } => format!("{depth} levels of nesting"),
                B::Documents { documents } => format!("{documents} documents"),
                B::ScalarBytes { total_scalar_bytes } => {
                    format!("{total_scalar_bytes} bytes of text")
                }
                B::MergeKeys { merge_keys } => format!("{merge_keys} merge keys (`<<`)"),
                B::AliasAnchorRatio { aliases, anchors } => {
                    format!("{aliases} aliases of {anchors} anchors")
                }
                _ => "too much content".to_string(),
            };
            format!("too large: {what}; {TOO_BIG}")
        }
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            format!("too large: aliases expand too often; {TOO_BIG}")
        }
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(src: &str) -> String {
        from_str::<serde_json::Value>(src, "v.yaml")
            .unwrap_err()
            .to_string()
    }

    /// Library wording (its option names, its debug dumps) never reaches
    /// the user.
    fn assert_plain(message: &str) {
        for internal in [
            "DuplicateKeyPolicy",
            "Options",
            "budget",
            "Budget",
            "{",
            "breach",
        ] {
            assert!(!message.contains(internal), "{internal} in {message}");
        }
    }

    #[test]
    fn a_duplicate_key_names_the_key_and_what_to_do() {
        let message = error_of("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(
            message,
            "v.yaml:4:3: duplicate key `c`: a key may appear only once in a mapping (a later one would silently replace the earlier); keep one"
        );
        assert_plain(&message);
    }

    #[test]
    fn a_yaml_bomb_is_refused_in_plain_words() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let prev = if level == 1 {
                "a".to_string()
            } else {
                format!("l{}", level - 1)
            };
            let refs = vec![format!("*{prev}"); 10].join(", ");
            src.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        let message = error_of(&src);
        assert!(message.starts_with("v.yaml:"), "{message}");
        assert!(message.contains(": too large: "), "{message}");
        assert!(message.contains("write the values out"), "{message}");
        assert_plain(&message);
    }
}
