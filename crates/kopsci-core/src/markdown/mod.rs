//! GitLab Markdown from embedded templates: `report.md`, the merge-request
//! note and drift issues are rendered by minijinja from the `*.md.j2` files
//! beside this module, and every piece of text that comes from a report,
//! kops or the state store goes through one of the filters here, once.
//!
//! What the filters defend against: report text is not trusted (an MR author
//! writes values and templates, kops echoes them, a report artifact can be
//! edited), yet it ends up in a note or issue posted with kopsci's token.
//! So report text must never
//!
//! - ping people or cross-link issues: GitLab turns `@user`, `@all`, `#12`,
//!   `!12`, `~label`, `%milestone`, `$12` and `&12` in text into mentions and
//!   references, so a word joiner (U+2060, invisible) goes after the sigil;
//! - run quick actions: a line starting with `/` (`/approve`, `/merge`) in a
//!   note or issue is a command for GitLab, so such lines start with a word
//!   joiner too;
//! - leave its place in the document: no raw HTML (`</details>`, comments,
//!   images), no code fence or code span that kopsci did not open and close
//!   itself, no `<details>` left open.
//!
//! Filters: `code` (an inline code span), `code_cell` (the same inside a
//! table), `cell` (one table cell of plain text), `text` (one line of prose
//! that may hold code spans), `fenced(lang)` (a code block), `untrusted` (a
//! whole Markdown document from a report file, such as `report.md`).

use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::errors::{Error, Result};

/// Inserted after a GitLab reference sigil (and before a quick-action
/// slash) to break the reference: U+2060 WORD JOINER, invisible.
pub const JOINER: char = '\u{2060}';

/// The embedded templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("report.md", include_str!("report.md.j2")),
    ("note.md", include_str!("note.md.j2")),
    ("drift-issue.md", include_str!("drift-issue.md.j2")),
];

/// Longest cell text; a failure message can be a whole kops error.
const CELL_MAX_CHARS: usize = 300;

/// Info strings a code fence may carry: anything else (`mermaid`, `math`,
/// `plantuml`) would make GitLab render the block as a diagram.
const FENCE_LANGS: &[&str] = &["", "text", "diff", "yaml", "json", "console", "shell"];

static ENVIRONMENT: OnceLock<std::result::Result<Environment<'static>, String>> = OnceLock::new();

fn environment() -> Result<&'static Environment<'static>> {
    ENVIRONMENT
        .get_or_init(build)
        .as_ref()
        .map_err(|message| Error::Template {
            location: "<embedded Markdown templates>".to_string(),
            message: message.clone(),
        })
}

fn build() -> std::result::Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_debug(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A misspelt field is a bug to catch in tests, never an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| e.to_string())?;
    env.set_syntax(syntax);
    env.add_filter("code", |s: String| code(&s));
    env.add_filter("code_cell", |s: String| code_cell(&s));
    env.add_filter("cell", |s: String| cell(&s));
    env.add_filter("text", |s: String| text(&s));
    env.add_filter("fenced", |s: String, lang: Option<String>| {
        fenced(&s, lang.as_deref().unwrap_or(""))
    });
    env.add_filter("untrusted", |s: String| untrusted(&s));
    // A count kops did not print (an older table without TARGET).
    env.add_filter("count", |v: Value| {
        if v.is_none() || v.is_undefined() {
            "-".to_string()
        } else {
            v.to_string()
        }
    });
    env.add_function("plural", |n: usize, what: String| plural(n, &what));
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(env)
}

fn template_error(name: &str, e: minijinja::Error) -> Error {
    Error::Template {
        location: format!("<embedded {name}>"),
        message: e.to_string(),
    }
}

/// Renders the embedded template `name` with `ctx`.
pub fn render(name: &str, ctx: Value) -> Result<String> {
    let env = environment()?;
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| template_error(name, e))
}

/// An embedded template evaluated once, whose macros render the pieces of
/// a document that is assembled under a size budget.
pub struct Pieces {
    name: &'static str,
    rendered: minijinja::Captured<'static>,
}

impl Pieces {
    pub fn new(name: &'static str, ctx: Value) -> Result<Pieces> {
        let env = environment()?;
        let rendered = env
            .get_template(name)
            .and_then(|t| t.render_captured(ctx))
            .map_err(|e| template_error(name, e))?;
        Ok(Pieces { name, rendered })
    }

    /// The output of macro `name` called with `args`.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<String> {
        let template = self.name;
        self.rendered
            .with_state_mut(|state| state.call_macro(name, args))
            .map_err(|e| template_error(template, e))
    }
}

/// `value` as a template value, through its JSON form (the fields and
/// names `report.json` has).
pub fn value<T: serde::Serialize>(value: &T) -> Value {
    fn convert(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::from(()),
            serde_json::Value::Bool(b) => Value::from(b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Value::from(u),
                (None, Some(i)) => Value::from(i),
                _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::from(s),
            serde_json::Value::Array(items) => {
                Value::from(items.into_iter().map(convert).collect::<Vec<_>>())
            }
            serde_json::Value::Object(map) => {
                Value::from_pairs(map.into_iter().map(|(k, v)| (k, convert(v))))
            }
        }
    }
    convert(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
}

/// `1 cluster`, `2 clusters`.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Control characters other than tab and newline become U+FFFD: a
/// carriage return is a line break to Markdown, NUL is never meaningful.
fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars()
        .map(|c| match c {
            '\r' => '\n',
            '\t' | '\n' => c,
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Whether `sigil` followed by `next` is a GitLab reference or mention (or
/// an image) that report text must not make.
fn is_reference(sigil: char, next: Option<char>) -> bool {
    let Some(next) = next else {
        return false;
    };
    match sigil {
        '@' => next.is_alphanumeric() || next == '_',
        '#' | '$' | '&' => next.is_ascii_digit(),
        '!' => next.is_ascii_digit() || next == '[',
        '~' | '%' => next.is_alphanumeric() || next == '_' || next == '"',
        _ => false,
    }
}

/// The longest run of backticks in `text`.
fn longest_backticks(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// An inline code span holding `text` on one line. GitLab renders nothing
/// inside code, so only the delimiters need care: longer than any backtick
/// run inside.
pub fn code(text: &str) -> String {
    let text = clean(text).replace('\n', " ");
    match longest_backticks(&text) {
        0 => format!("`{text}`"),
        n => {
            let fence = "`".repeat(n + 1);
            format!("{fence} {text} {fence}")
        }
    }
}

/// [`code`] for a table cell: a pipe ends the cell even inside code, so it
/// is escaped (GitLab shows it plain).
pub fn code_cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// Plain text for one Markdown table cell: one line, at most 300
/// characters, no HTML, no pipes, no code spans, no references.
pub fn cell(text: &str) -> String {
    let line = clean(text).split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = match line.char_indices().nth(CELL_MAX_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    };
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '`' => out.push('\''),
            c => out.push(c),
        }
        if is_reference(c, next) {
            out.push(JOINER);
        }
    }
    out
}

/// One line of prose that may hold code spans (a warning, why kops was
/// skipped): line breaks become spaces, code spans stay, everything else is
/// escaped.
pub fn text(text: &str) -> String {
    let line = clean(text).replace('\n', " ");
    let mut out = String::with_capacity(line.len());
    escape_line(
        &line,
        &mut out,
        Escape {
            keep_entities: false,
            escape_gt: true,
            line_start: false,
        },
    );
    out
}

/// A fenced code block whose fence is longer than any backtick run inside,
/// so content can never close it early. Lines that start with `/` get a
/// word joiner in front: GitLab's quick-action parser does not understand
/// every fence. Control characters are escaped as everywhere else: the
/// report is read in terminals too (`cat report.md`).
pub fn fenced(content: &str, lang: &str) -> String {
    let fence = "`".repeat(longest_backticks(content).max(2) + 1);
    let lang = if FENCE_LANGS.contains(&lang) {
        lang
    } else {
        "text"
    };
    let body = content.strip_suffix('\n').unwrap_or(content);
    let mut out = format!("{fence}{lang}\n");
    for line in body.split('\n') {
        let line = &*crate::text::escape_controls(line);
        if line.trim_start_matches([' ', '\t']).starts_with('/') {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            out.push_str(&line[..indent]);
            out.push(JOINER);
            out.push_str(&line[indent..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// How [`escape_line`] treats the text between code spans.
#[derive(Clone, Copy)]
struct Escape {
    /// Keep the entities kopsci itself writes (`&lt;` …): the input is
    /// Markdown kopsci rendered, not raw text.
    keep_entities: bool,
    /// Escape `>` too (raw text); Markdown keeps it for block quotes.
    escape_gt: bool,
    /// The text starts a line: quick actions and fences are possible.
    line_start: bool,
}

/// Entities kopsci's own filters produce, kept as they are in Markdown
/// read back from a report.
const KEPT_ENTITIES: &[&str] = &["&lt;", "&gt;", "&amp;", "&quot;", "&#39;"];

/// Escapes one line of Markdown text. Code spans that open and close on the
/// line are kept verbatim (GitLab renders nothing inside them); every other
/// backtick is escaped, so no code span can start here and end on a later
/// line where this scan would not see it. Outside code: `<` (and `>` for
/// raw text) and `&` are escaped, references get a word joiner, and at the
/// start of a line a quick-action `/` gets one and a `~~~` fence is escaped.
fn escape_line(line: &str, out: &mut String, how: Escape) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    if how.line_start {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            out.push(chars[i]);
            i += 1;
        }
        if chars.get(i) == Some(&'/') {
            out.push(JOINER);
        }
        if chars[i..].starts_with(&['~', '~', '~']) {
            while chars.get(i) == Some(&'~') {
                out.push_str("\\~");
                i += 1;
            }
        }
    }
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                // An escaped character is literal text: the pair is kept,
                // but a literal `@` still mentions, so it is neutralised.
                let escaped = next.unwrap_or_default();
                out.push('\\');
                out.push(escaped);
                if is_reference(escaped, chars.get(i + 2).copied()) {
                    out.push(JOINER);
                }
                i += 2;
            }
            '`' => {
                let run = chars[i..].iter().take_while(|&&c| c == '`').count();
                match closing_run(&chars, i + run, run) {
                    Some(end) => {
                        out.extend(&chars[i..end + run]);
                        i = end + run;
                    }
                    None => {
                        for _ in 0..run {
                            out.push_str("\\`");
                        }
                        i += run;
                    }
                }
            }
            '<' => {
                out.push_str("&lt;");
                i += 1;
            }
            '>' if how.escape_gt => {
                out.push_str("&gt;");
                i += 1;
            }
            '&' => {
                let rest: String = chars[i..chars.len().min(i + 6)].iter().collect();
                match KEPT_ENTITIES
                    .iter()
                    .find(|e| how.keep_entities && rest.starts_with(*e))
                {
                    Some(entity) => {
                        out.push_str(entity);
                        i += entity.chars().count();
                    }
                    None => {
                        out.push_str("&amp;");
                        if is_reference('&', next) {
                            out.push(JOINER);
                        }
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                if is_reference(c, next) {
                    out.push(JOINER);
                }
                i += 1;
            }
        }
    }
}

/// Where the backtick run of exactly `len` that closes a code span begins,
/// searching from `from`.
fn closing_run(chars: &[char], from: usize, len: usize) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        if chars[i] == '`' {
            let run = chars[i..].iter().take_while(|&&c| c == '`').count();
            if run == len {
                return Some(i);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    None
}

/// A code fence opening: (char, length, info string), when `line` is one.
fn fence_open(line: &str) -> Option<(char, usize, String)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|&x| x == c).count();
    if len < 3 {
        return None;
    }
    let info = trimmed[len..].trim();
    if c == '`' && info.contains('`') {
        // Not a fence but an inline code span.
        return None;
    }
    let lang = info.split_whitespace().next().unwrap_or("").to_string();
    Some((c, len, lang))
}

fn fence_closes(line: &str, c: char, len: usize) -> bool {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return false;
    }
    let run = trimmed.chars().take_while(|&x| x == c).count();
    run >= len && trimmed[run..].trim().is_empty()
}

const DETAILS_OPEN: &str = "<details><summary>";
const SUMMARY_CLOSE: &str = "</summary>";
const DETAILS_CLOSE: &str = "</details>";

/// Markdown read from a report file (`report.md`), made safe to embed in a
/// note or issue: the only HTML kept is kopsci's own
/// `<details><summary>…</summary>` / `</details>` lines, balanced; code
/// fences are re-emitted by kopsci (so nothing inside can close them) and
/// closed if left open; every other line is escaped as by [`text`], minus
/// the `>` of block quotes.
pub fn untrusted(md: &str) -> String {
    let md = clean(md);
    let mut lines: Vec<String> = Vec::new();
    let mut fence: Option<(char, usize, String, Vec<&str>)> = None;
    let mut depth = 0usize;
    let mut blank_next = false;
    let blank_before = |lines: &mut Vec<String>| {
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            lines.push(String::new());
        }
    };
    for line in md.split('\n') {
        if let Some((c, len, lang, body)) = &mut fence {
            if fence_closes(line, *c, *len) {
                let block = fenced(&body.join("\n"), lang);
                lines.extend(block.lines().map(str::to_string));
                fence = None;
            } else {
                body.push(line);
            }
            continue;
        }
        if blank_next && !line.trim().is_empty() {
            lines.push(String::new());
        }
        blank_next = false;
        if let Some((c, len, lang)) = fence_open(line) {
            fence = Some((c, len, lang, Vec::new()));
            continue;
        }
        if let Some(summary) = line
            .strip_prefix(DETAILS_OPEN)
            .and_then(|rest| rest.trim_end().strip_suffix(SUMMARY_CLOSE))
        {
            let mut out = String::from(DETAILS_OPEN);
            escape_line(
                summary,
                &mut out,
                Escape {
                    keep_entities: true,
                    escape_gt: true,
                    line_start: false,
                },
            );
            out.push_str(SUMMARY_CLOSE);
            lines.push(out);
            depth += 1;
            // The `<details>` line starts an HTML block that runs to the
            // next blank line: what follows must not be part of it.
            blank_next = true;
            continue;
        }
        if line.trim_end() == DETAILS_CLOSE && depth > 0 {
            blank_before(&mut lines);
            lines.push(DETAILS_CLOSE.to_string());
            depth -= 1;
            continue;
        }
        let mut out = String::with_capacity(line.len());
        escape_line(
            line,
            &mut out,
            Escape {
                keep_entities: true,
                escape_gt: false,
                line_start: true,
            },
        );
        lines.push(out);
    }
    if let Some((_, _, lang, body)) = fence {
        let block = fenced(&body.join("\n"), &lang);
        lines.extend(block.lines().map(str::to_string));
    }
    for _ in 0..depth {
        blank_before(&mut lines);
        lines.push(DETAILS_CLOSE.to_string());
    }
    let mut out = lines.join("\n");
    if md.ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Text for a terminal line: control characters escaped (`\u{1b}`), so a
/// report cannot move the cursor or recolour a job log.
pub fn terminal(text: &str) -> String {
    crate::text::escape_controls(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_template_parses() {
        let env = environment().unwrap();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
    }

    #[test]
    fn mentions_references_and_images_in_cells_are_neutralised() {
        let out =
            cell("ping @all and @alice, see #12, !3, ~bug, %v1, $4, &5, ![x](http://t/x.png)");
        for reference in [
            "@all", "@alice", "#12", "!3", "~bug", "%v1", "$4", "&5", "![x]",
        ] {
            assert!(!out.contains(reference), "{reference} in {out}");
        }
        assert!(out.contains(&format!("@{JOINER}all")), "{out}");
        // What is not a reference is left alone.
        assert_eq!(cell("a # b ! c ~ d 100% user@"), "a # b ! c ~ d 100% user@");
    }

    #[test]
    fn cells_keep_their_old_escaping() {
        assert_eq!(
            cell("`kops update cluster` failed | exit 1\n<b>"),
            "'kops update cluster' failed \\| exit 1 &lt;b&gt;"
        );
        assert_eq!(cell(&"x".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn code_spans_outgrow_backticks_and_stay_on_one_line() {
        assert_eq!(code("a.example.com"), "`a.example.com`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("a\nb"), "`a b`");
        assert_eq!(code_cell("a|b"), "`a\\|b`");
    }

    #[test]
    fn prose_keeps_code_spans_and_escapes_the_rest() {
        assert_eq!(
            text("kops was not run (`--without-kops`): skipped."),
            "kops was not run (`--without-kops`): skipped."
        );
        assert_eq!(
            text("a <b>&c</b> @team `<x>` ` open"),
            format!("a &lt;b&gt;&amp;c&lt;/b&gt; @{JOINER}team `<x>` \\` open")
        );
        assert_eq!(text("line\nbreak"), "line break");
    }

    #[test]
    fn fences_outgrow_backticks_and_neutralise_quick_actions() {
        assert_eq!(fenced("a\n", "diff"), "```diff\na\n```\n");
        assert_eq!(fenced("x ```` y", ""), "`````\nx ```` y\n`````\n");
        assert_eq!(
            fenced("/approve\n  /merge\nok", "text"),
            format!("```text\n{JOINER}/approve\n  {JOINER}/merge\nok\n```\n")
        );
        assert_eq!(fenced("a", "mermaid"), "```text\na\n```\n");
        // A terminal reading the report never gets a raw escape; tabs stay.
        assert_eq!(
            fenced("\u{1b}[31mred\tcell\u{7}", "text"),
            "```text\n\\x1b[31mred\tcell\\x07\n```\n"
        );
    }

    #[test]
    fn kopsci_markdown_passes_through_untouched() {
        let md = "#### `c` (prod) — 0 to create, 1 to modify, 0 to delete\n\n\
                  Dry run of `s3://b/c/` (kops 1.34.1): `kops replace --force -f` ran.\n\n\
                  | change | object | fields |\n| --- | --- | --- |\n| modify | `instancegroup/nodes` | `spec.maxSize` |\n\n\
                  > :warning: a &lt;b&gt; &amp; c\n\n\
                  <details><summary>State store diff (what `kops replace` changed)</summary>\n\n\
                  ```diff\n-a\n+b\n```\n\n</details>\n\n";
        assert_eq!(untrusted(md), md);
    }

    #[test]
    fn untrusted_markdown_cannot_break_out() {
        let md = "hi @all\n/approve\n</details>\n<!-- kopsci-note -->\n<img src=x onerror=alert(1)>\n\
                  <details><summary>x</summary>\n<script>\n```\nstill code </details>\n";
        let out = untrusted(md);
        assert!(!out.contains("@all"), "{out}");
        assert!(out.contains(&format!("{JOINER}/approve")), "{out}");
        assert!(!out.contains("<!--"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<script"), "{out}");
        // The stray closer is text; the opened details is closed once, after
        // the unclosed fence was closed.
        assert_eq!(out.matches("</details>").count(), 2, "{out}");
        assert!(out.contains("&lt;/details>\n"), "{out}");
        assert!(
            out.ends_with("```\nstill code </details>\n```\n\n</details>\n"),
            "{out}"
        );
        // The details line is followed by a blank line: the next line is
        // Markdown, not part of an HTML block.
        assert!(out.contains("<summary>x</summary>\n\n&lt;script>"), "{out}");
    }

    #[test]
    fn code_spans_cannot_span_lines_or_hide_html() {
        // The first backtick cannot open a span that closes on the next
        // line; the second line's own span hides its HTML for GitLab too.
        let out = untrusted("a `b\nc` <script> `d`\n");
        assert_eq!(out, "a \\`b\nc` <script> `d\\`\n");
        let out = untrusted("````\n```\n</details>\n````\n");
        assert_eq!(out, "````\n```\n</details>\n````\n");
        let out = untrusted("\t~~~\n    ```\n");
        assert!(!out.contains("\n```"), "{out}");
    }

    #[test]
    fn carriage_returns_cannot_start_hidden_lines() {
        let out = untrusted("```\nx\r```\r<script>\n");
        assert!(!out.contains("<script"), "{out}");
    }

    #[test]
    fn terminal_text_escapes_control_characters() {
        assert_eq!(terminal("a\u{1b}[31mb\nc"), "a\\x1b[31mb\\nc");
    }
}
