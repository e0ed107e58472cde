//! Text from inputs made safe to show: what a terminal, a CI log or a
//! message would act on instead of showing is escaped, in one way
//! everywhere.

use std::borrow::Cow;
use std::path::Path;

/// Escapes what a terminal would act on instead of showing: C0 controls
/// (ESC, BEL, CR, newline…) but tab, DEL, C1 controls (a lone U+009B is a
/// CSI to some terminals) and the bidirectional overrides that reorder
/// what is displayed. `\u{1b}` becomes the four characters `\x1b`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path as [`escape_controls`] shows text.
pub fn escape_path(path: &Path) -> String {
    escape_controls(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain text\tok"), "plain text\tok");
        assert_eq!(
            escape_controls("a\u{1b}[31mb\nc\rd\u{7}"),
            "a\\x1b[31mb\\nc\\rd\\x07"
        );
        assert_eq!(escape_controls("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
        assert!(matches!(escape_controls("clean"), Cow::Borrowed(_)));
    }
}
