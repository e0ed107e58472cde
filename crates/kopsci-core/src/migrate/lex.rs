//! The lexer of Go's `text/template`, token for token: the same delimiters,
//! trim markers (`{{- ` and ` -}}`, a space required next to the dash),
//! comments, and action tokens, so that whatever kOps' templater parses is
//! read the same way here. Unlike Go's lexer it keeps the text between
//! actions untrimmed; the converter decides how to express the trimming.

use std::fmt;

/// One token, with the byte offset where it starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub kind: Kind,
    pub pos: usize,
    /// The token's source text (strings still quoted).
    pub val: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Plain text between actions, untrimmed.
    Text,
    /// `{{` or `{{- `; `trim` says whether it had the marker.
    LeftDelim {
        trim: bool,
    },
    /// `}}` or ` -}}`.
    RightDelim {
        trim: bool,
    },
    /// A whole `{{/* … */}}`: the text between `/*` and `*/`, with both
    /// delimiters' trim markers.
    Comment {
        trim_left: bool,
        trim_right: bool,
    },
    Space,
    Identifier,
    Field,
    Variable,
    Dot,
    Bool,
    Nil,
    Number,
    CharConstant,
    String,
    RawString,
    Pipe,
    LeftParen,
    RightParen,
    Assign,
    Declare,
    /// Any other printable ASCII character (Go's `itemChar`; `,` matters).
    Char,
    // Keywords.
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
    Eof,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Space => f.write_str("space"),
            Kind::LeftDelim { .. } => f.write_str("{{"),
            Kind::RightDelim { .. } => f.write_str("}}"),
            _ => write!(f, "{:?}", self.val),
        }
    }
}

/// A lexing error at a byte offset, in Go's words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LexError {
    pub pos: usize,
    pub message: String,
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

/// Go's `isSpace`: the only characters a trim marker removes.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

/// Splits `src` into tokens. Stops at the first error, as Go does.
pub(crate) fn lex(src: &str) -> Result<Vec<Item>, LexError> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        start: 0,
        items: Vec::new(),
        paren_depth: 0,
        action_start: 0,
    };
    lexer.run()?;
    Ok(lexer.items)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    start: usize,
    items: Vec<Item>,
    paren_depth: i32,
    /// Where the current action's `{{` is, for "unclosed action".
    action_start: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
        }
    }

    fn emit(&mut self, kind: Kind) {
        self.items.push(Item {
            kind,
            pos: self.start,
            val: self.src[self.start..self.pos].to_string(),
        });
        self.start = self.pos;
    }

    fn error(&self, message: impl Into<String>) -> LexError {
        LexError {
            pos: self.start,
            message: message.into(),
        }
    }

    /// Whether the lexer is at a right delimiter, and whether it has a trim
    /// marker.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[2..].starts_with(RIGHT) {
            return (true, true);
        }
        (rest.starts_with(RIGHT), false)
    }

    fn run(&mut self) -> Result<(), LexError> {
        loop {
            // Text up to the next left delimiter.
            match self.rest().find(LEFT) {
                None => {
                    self.pos = self.src.len();
                    if self.pos > self.start {
                        self.emit(Kind::Text);
                    }
                    self.emit(Kind::Eof);
                    return Ok(());
                }
                Some(at) => {
                    self.pos += at;
                    if self.pos > self.start {
                        self.emit(Kind::Text);
                    }
                    self.left_delim()?;
                }
            }
        }
    }

    fn left_delim(&mut self) -> Result<(), LexError> {
        self.action_start = self.pos;
        self.pos += LEFT.len();
        let trim = has_left_trim_marker(self.rest());
        let after_marker = if trim { 2 } else { 0 };
        if self.rest()[after_marker..].starts_with(LEFT_COMMENT) {
            return self.comment(trim, after_marker);
        }
        self.pos += after_marker;
        self.emit(Kind::LeftDelim { trim });
        self.paren_depth = 0;
        self.inside_action()
    }

    fn comment(&mut self, trim_left: bool, after_marker: usize) -> Result<(), LexError> {
        self.pos += after_marker + LEFT_COMMENT.len();
        let body_start = self.pos;
        let Some(end) = self.rest().find(RIGHT_COMMENT) else {
            return Err(self.error("unclosed comment"));
        };
        let body = self.src[body_start..body_start + end].to_string();
        self.pos += end + RIGHT_COMMENT.len();
        let (delim, trim_right) = self.at_right_delim();
        if !delim {
            return Err(self.error("comment ends before closing delimiter"));
        }
        if trim_right {
            self.pos += 2;
        }
        self.pos += RIGHT.len();
        self.items.push(Item {
            kind: Kind::Comment {
                trim_left,
                trim_right,
            },
            pos: self.start,
            val: body,
        });
        self.start = self.pos;
        Ok(())
    }

    fn right_delim(&mut self) {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.start = self.pos;
        }
        self.pos += RIGHT.len();
        self.emit(Kind::RightDelim { trim });
    }

    fn inside_action(&mut self) -> Result<(), LexError> {
        loop {
            let (delim, _) = self.at_right_delim();
            if delim {
                if self.paren_depth == 0 {
                    self.right_delim();
                    return Ok(());
                }
                return Err(self.error("unclosed left paren"));
            }
            let c = self.next();
            match c {
                None => {
                    return Err(LexError {
                        pos: self.action_start,
                        message: "unclosed action".into(),
                    });
                }
                Some(c) if is_space(c) => {
                    self.backup(Some(c));
                    if self.space() {
                        self.right_delim();
                        return Ok(());
                    }
                }
                Some('=') => self.emit(Kind::Assign),
                Some(':') => {
                    if self.next() != Some('=') {
                        return Err(self.error("expected :="));
                    }
                    self.emit(Kind::Declare);
                }
                Some('|') => self.emit(Kind::Pipe),
                Some('"') => self.quote()?,
                Some('`') => self.raw_quote()?,
                Some('$') => self.variable()?,
                Some('\'') => self.char_constant()?,
                Some('.') => {
                    // ".field" or a number like ".5".
                    match self.peek() {
                        Some(d) if d.is_ascii_digit() => {
                            self.backup(c);
                            self.number()?;
                        }
                        _ => self.field_or_variable(Kind::Field)?,
                    }
                }
                Some(d) if d == '+' || d == '-' || d.is_ascii_digit() => {
                    self.backup(c);
                    self.number()?;
                }
                Some(d) if is_alphanumeric(d) => {
                    self.backup(c);
                    self.identifier()?;
                }
                Some('(') => {
                    self.paren_depth += 1;
                    self.emit(Kind::LeftParen);
                }
                Some(')') => {
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        return Err(self.error("unexpected right paren"));
                    }
                    self.emit(Kind::RightParen);
                }
                Some(d) if d.is_ascii() && !d.is_ascii_control() => self.emit(Kind::Char),
                Some(d) => {
                    return Err(self.error(format!(
                        "unrecognized character in action: U+{:04X}",
                        d as u32
                    )));
                }
            }
        }
    }

    /// A run of spaces. Returns true when it turned out to be the space of a
    /// ` -}}` right after a single space (the caller then lexes the
    /// delimiter), as Go does.
    fn space(&mut self) -> bool {
        let mut count = 0;
        while let Some(c) = self.peek() {
            if !is_space(c) {
                break;
            }
            self.next();
            count += 1;
        }
        // A trim-marked right delimiter starts with a space: give it back.
        let before = &self.src[self.pos - 1..];
        if has_right_trim_marker(before) && before[2..].starts_with(RIGHT) {
            self.pos -= 1;
            if count == 1 {
                return true;
            }
        }
        self.emit(Kind::Space);
        false
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.rest().starts_with(RIGHT),
        }
    }

    fn identifier(&mut self) -> Result<(), LexError> {
        loop {
            let c = self.next();
            match c {
                Some(c) if is_alphanumeric(c) => {}
                _ => {
                    self.backup(c);
                    if !self.at_terminator() {
                        return Err(self
                            .error(format!("bad character U+{:04X}", c.map_or(0, |c| c as u32))));
                    }
                    let word = &self.src[self.start..self.pos];
                    let kind = match word {
                        "block" => Kind::Block,
                        "break" => Kind::Break,
                        "continue" => Kind::Continue,
                        "define" => Kind::Define,
                        "else" => Kind::Else,
                        "end" => Kind::End,
                        "if" => Kind::If,
                        "range" => Kind::Range,
                        "nil" => Kind::Nil,
                        "template" => Kind::Template,
                        "with" => Kind::With,
                        "true" | "false" => Kind::Bool,
                        _ => Kind::Identifier,
                    };
                    self.emit(kind);
                    return Ok(());
                }
            }
        }
    }

    fn variable(&mut self) -> Result<(), LexError> {
        if self.at_terminator() {
            self.emit(Kind::Variable);
            return Ok(());
        }
        self.field_or_variable(Kind::Variable)
    }

    fn field_or_variable(&mut self, kind: Kind) -> Result<(), LexError> {
        if self.at_terminator() {
            self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
            return Ok(());
        }
        let last = loop {
            let c = self.next();
            match c {
                Some(c) if is_alphanumeric(c) => {}
                _ => {
                    self.backup(c);
                    break c;
                }
            }
        };
        if !self.at_terminator() {
            return Err(self.error(format!(
                "bad character U+{:04X}",
                last.map_or(0, |c| c as u32)
            )));
        }
        self.emit(kind);
        Ok(())
    }

    fn char_constant(&mut self) -> Result<(), LexError> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => return Err(self.error("unterminated character constant")),
                    Some(_) => {}
                },
                Some('\n') | None => return Err(self.error("unterminated character constant")),
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::CharConstant);
        Ok(())
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.next();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn number(&mut self) -> Result<(), LexError> {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alphanumeric) {
            self.next();
            return Err(self.error(format!(
                "bad number syntax: {:?}",
                &self.src[self.start..self.pos]
            )));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            return Err(self.error(format!(
                "bad number syntax: {:?} (complex numbers are not supported)",
                &self.src[self.start..self.pos]
            )));
        }
        self.emit(Kind::Number);
        Ok(())
    }

    fn quote(&mut self) -> Result<(), LexError> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => return Err(self.error("unterminated quoted string")),
                    Some(_) => {}
                },
                Some('\n') | None => return Err(self.error("unterminated quoted string")),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String);
        Ok(())
    }

    fn raw_quote(&mut self) -> Result<(), LexError> {
        loop {
            match self.next() {
                None => return Err(self.error("unterminated raw quoted string")),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::RawString);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        lex(src)
            .unwrap()
            .into_iter()
            .map(|i| (i.kind, i.val))
            .collect()
    }

    #[test]
    fn text_actions_and_trim_markers() {
        let items = kinds("a {{- .x -}} b");
        assert_eq!(
            items,
            vec![
                (Kind::Text, "a ".into()),
                (Kind::LeftDelim { trim: true }, "{{- ".into()),
                (Kind::Field, ".x".into()),
                (Kind::RightDelim { trim: true }, "}}".into()),
                (Kind::Text, " b".into()),
                (Kind::Eof, "".into()),
            ]
        );
        // `{{-3}}` is a negative number, not a trim marker.
        let items = kinds("{{-3}}");
        assert_eq!(items[0].0, Kind::LeftDelim { trim: false });
        assert_eq!(items[1], (Kind::Number, "-3".into()));
    }

    #[test]
    fn comments_fields_variables_and_strings() {
        let items = kinds("{{- /* hi */ -}}{{ $x := .a.b | printf \"%s\" `r` 'c' }}");
        assert_eq!(
            items[0],
            (
                Kind::Comment {
                    trim_left: true,
                    trim_right: true
                },
                " hi ".into()
            )
        );
        let toks: Vec<Kind> = items
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != Kind::Space)
            .collect();
        assert_eq!(
            toks,
            vec![
                Kind::Comment {
                    trim_left: true,
                    trim_right: true
                },
                Kind::LeftDelim { trim: false },
                Kind::Variable,
                Kind::Declare,
                Kind::Field,
                Kind::Field,
                Kind::Pipe,
                Kind::Identifier,
                Kind::String,
                Kind::RawString,
                Kind::CharConstant,
                Kind::RightDelim { trim: false },
                Kind::Eof,
            ]
        );
    }

    #[test]
    fn errors_are_go_errors() {
        assert_eq!(lex("{{ /* x */ }}").unwrap()[2].kind, Kind::Char);
        assert_eq!(lex("{{/* x ").unwrap_err().message, "unclosed comment");
        assert_eq!(
            lex("{{/* x */ y}}").unwrap_err().message,
            "comment ends before closing delimiter"
        );
        assert_eq!(lex("{{ .x ").unwrap_err().message, "unclosed action");
        assert_eq!(
            lex("{{ \"abc }}").unwrap_err().message,
            "unterminated quoted string"
        );
        assert_eq!(lex("{{ (.x }}").unwrap_err().message, "unclosed left paren");
    }
}
