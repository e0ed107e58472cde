//! The parser of Go's `text/template` (its `parse` package) for one file:
//! the same grammar, the same errors, and Go's variable scoping resolved
//! up front, so the converter knows which declaration every `$x` names and
//! whether a variable is assigned from inside a nested `range`.

use super::lex::{self, Item, Kind};

/// A parsed file.
#[derive(Debug)]
pub(crate) struct Template {
    pub nodes: Vec<Node>,
    /// Every variable the file declares; `Var(0)` is `$`.
    pub vars: Vec<VarInfo>,
}

/// A variable declaration.
#[derive(Debug, Clone)]
pub(crate) struct VarInfo {
    /// The name without `$` (empty for `$` itself).
    pub name: String,
    /// How many `range` bodies enclose the declaration.
    pub range_depth: usize,
    /// Whether a `range` variable declared it.
    pub is_range_var: bool,
    /// Whether it is assigned (`$x = …`) inside a `range` body nested
    /// deeper than its declaration: Jinja needs a namespace for that.
    pub assigned_deeper: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Var(pub usize);

/// The delimiters of one action: where it starts and its trim markers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tag {
    pub pos: usize,
    pub trim_left: bool,
    pub trim_right: bool,
}

#[derive(Debug)]
pub(crate) enum Node {
    /// Source text between actions, untrimmed.
    Text {
        raw: String,
    },
    Comment {
        tag: Tag,
        text: String,
    },
    /// `{{ pipeline }}` (prints unless the pipeline declares or assigns).
    Action {
        tag: Tag,
        pipe: Pipe,
    },
    If(Control),
    With(Control),
    Range(Control),
    /// `{{ template "name" pipeline }}`.
    Template {
        tag: Tag,
        name: String,
        pipe: Option<Pipe>,
    },
    Break(Tag),
    Continue(Tag),
}

/// `if`, `with` or `range`: its opening tag, pipeline, body, `else` part and
/// closing tag.
#[derive(Debug)]
pub(crate) struct Control {
    pub open: Tag,
    pub pipe: Pipe,
    pub body: Vec<Node>,
    pub otherwise: Option<Else>,
    pub end: Tag,
}

#[derive(Debug)]
pub(crate) enum Else {
    /// `{{ else }} …`
    Plain { tag: Tag, body: Vec<Node> },
    /// `{{ else if … }}` / `{{ else with … }}`: the chained control shares
    /// the `{{ end }}` of the outer one.
    Chain { control: Box<Control> },
}

#[derive(Debug)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub decl: Vec<Var>,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug)]
pub(crate) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub(crate) enum Arg {
    /// `.a.b` (field names without dots).
    Field {
        pos: usize,
        path: Vec<String>,
    },
    /// `$x.a.b` or `$.a`.
    Variable {
        pos: usize,
        var: Var,
        path: Vec<String>,
    },
    /// `(pipeline).a.b`.
    Chain {
        pos: usize,
        base: Box<Arg>,
        path: Vec<String>,
    },
    /// A function name.
    Ident {
        pos: usize,
        name: String,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        value: bool,
    },
    Number {
        pos: usize,
        value: Number,
    },
    String {
        pos: usize,
        value: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Ident { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Pipe(pipe) => pipe.pos,
        }
    }
}

/// A numeric constant as Go's templates evaluate it for an `interface{}`
/// argument: an `int`, or a `float64` when written with `.`, `e` or `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

/// A parse error at a byte offset, in Go's words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub pos: usize,
    pub message: String,
}

type PResult<T> = Result<T, ParseError>;

/// Parses one file. `is_function` says which identifiers are functions
/// (Go fails at parse time on an unknown one).
pub(crate) fn parse(src: &str, is_function: &dyn Fn(&str) -> bool) -> PResult<Template> {
    let items = lex::lex(src).map_err(|e| ParseError {
        pos: e.pos,
        message: e.message,
    })?;
    let mut parser = Parser {
        items,
        at: 0,
        vars: vec![VarInfo {
            name: String::new(),
            range_depth: 0,
            is_range_var: false,
            assigned_deeper: false,
        }],
        scope: vec![Var(0)],
        range_depth: 0,
        is_function,
    };
    let (nodes, end) = parser.item_list(true)?;
    debug_assert!(end.is_none());
    Ok(Template {
        nodes,
        vars: parser.vars,
    })
}

/// What ended an item list.
enum Ending {
    End(Tag),
    Else(Tag, ElseKind),
}

enum ElseKind {
    Plain,
    If,
    With,
}

struct Parser<'f> {
    items: Vec<Item>,
    at: usize,
    vars: Vec<VarInfo>,
    /// Visible variables, innermost last.
    scope: Vec<Var>,
    range_depth: usize,
    is_function: &'f dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn peek(&self) -> &Item {
        &self.items[self.at.min(self.items.len() - 1)]
    }

    fn next(&mut self) -> Item {
        let item = self.peek().clone();
        if self.at < self.items.len() {
            self.at += 1;
        }
        item
    }

    fn backup(&mut self) {
        self.at -= 1;
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let item = self.next();
            if item.kind != Kind::Space {
                return item;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let item = self.next_non_space();
        self.backup();
        item
    }

    fn error<T>(&self, pos: usize, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            pos,
            message: message.into(),
        })
    }

    fn unexpected<T>(&self, item: &Item, context: &str) -> PResult<T> {
        self.error(item.pos, format!("unexpected {item} in {context}"))
    }

    fn expect_right(&mut self, context: &str) -> PResult<bool> {
        let item = self.next_non_space();
        match item.kind {
            Kind::RightDelim { trim } => Ok(trim),
            _ => self.unexpected(&item, context),
        }
    }

    /// Parses nodes until `{{ end }}`, `{{ else … }}` or (at the top level)
    /// the end of the file.
    fn item_list(&mut self, top: bool) -> PResult<(Vec<Node>, Option<Ending>)> {
        let mut nodes = Vec::new();
        loop {
            let item = self.next();
            match item.kind {
                Kind::Eof => {
                    if top {
                        return Ok((nodes, None));
                    }
                    return self.error(item.pos, "unexpected EOF");
                }
                Kind::Text => nodes.push(Node::Text { raw: item.val }),
                Kind::Comment {
                    trim_left,
                    trim_right,
                } => nodes.push(Node::Comment {
                    tag: Tag {
                        pos: item.pos,
                        trim_left,
                        trim_right,
                    },
                    text: item.val,
                }),
                Kind::LeftDelim { trim } => {
                    let open = item.pos;
                    match self.action(open, trim)? {
                        Parsed::Node(node) => nodes.push(node),
                        Parsed::Ending(ending) => {
                            if top {
                                let (pos, what) = match &ending {
                                    Ending::End(tag) => (tag.pos, "{{end}}"),
                                    Ending::Else(tag, _) => (tag.pos, "{{else}}"),
                                };
                                return self.error(pos, format!("unexpected {what}"));
                            }
                            return Ok((nodes, Some(ending)));
                        }
                    }
                }
                _ => return self.unexpected(&item, "input"),
            }
        }
    }

    fn action(&mut self, pos: usize, trim_left: bool) -> PResult<Parsed> {
        let item = self.next_non_space();
        let tag = |trim_right| Tag {
            pos,
            trim_left,
            trim_right,
        };
        match item.kind {
            Kind::Block => self.error(
                item.pos,
                "unsupported: {{block}}: define the block as a snippet file and include it",
            ),
            Kind::Define => self.error(
                item.pos,
                "unsupported: {{define}}: move the definition into its own snippet file (named like the template) and use include",
            ),
            Kind::Break | Kind::Continue => {
                let is_break = item.kind == Kind::Break;
                let word = if is_break { "break" } else { "continue" };
                if self.range_depth == 0 {
                    return self.error(item.pos, format!("{{{{{word}}}}} outside {{{{range}}}}"));
                }
                let trim_right = self.expect_right(word)?;
                let tag = tag(trim_right);
                Ok(Parsed::Node(if is_break {
                    Node::Break(tag)
                } else {
                    Node::Continue(tag)
                }))
            }
            Kind::Else => {
                let peek = self.peek_non_space();
                let kind = match peek.kind {
                    Kind::If => {
                        self.next_non_space();
                        ElseKind::If
                    }
                    Kind::With => {
                        self.next_non_space();
                        ElseKind::With
                    }
                    _ => {
                        let trim_right = self.expect_right("else")?;
                        return Ok(Parsed::Ending(Ending::Else(
                            tag(trim_right),
                            ElseKind::Plain,
                        )));
                    }
                };
                // The right delimiter belongs to the chained if/with.
                Ok(Parsed::Ending(Ending::Else(tag(false), kind)))
            }
            Kind::End => {
                let trim_right = self.expect_right("end")?;
                Ok(Parsed::Ending(Ending::End(tag(trim_right))))
            }
            Kind::If => Ok(Parsed::Node(Node::If(self.control(
                pos,
                trim_left,
                Context::If,
            )?))),
            Kind::With => Ok(Parsed::Node(Node::With(self.control(
                pos,
                trim_left,
                Context::With,
            )?))),
            Kind::Range => Ok(Parsed::Node(Node::Range(self.control(
                pos,
                trim_left,
                Context::Range,
            )?))),
            Kind::Template => self.template_call(pos, trim_left),
            _ => {
                self.backup();
                let (pipe, trim_right) = self.pipeline(Context::Command)?;
                Ok(Parsed::Node(Node::Action {
                    tag: tag(trim_right),
                    pipe,
                }))
            }
        }
    }

    fn template_call(&mut self, pos: usize, trim_left: bool) -> PResult<Parsed> {
        let item = self.next_non_space();
        let name = match item.kind {
            Kind::String | Kind::RawString => unquote(&item.val).map_err(|message| ParseError {
                pos: item.pos,
                message,
            })?,
            _ => return self.unexpected(&item, "template clause"),
        };
        let next = self.next_non_space();
        let (pipe, trim_right) = match next.kind {
            Kind::RightDelim { trim } => (None, trim),
            _ => {
                self.backup();
                let (pipe, trim) = self.pipeline(Context::Template)?;
                (Some(pipe), trim)
            }
        };
        Ok(Parsed::Node(Node::Template {
            tag: Tag {
                pos,
                trim_left,
                trim_right,
            },
            name,
            pipe,
        }))
    }

    fn control(&mut self, pos: usize, trim_left: bool, context: Context) -> PResult<Control> {
        let mark = self.scope.len();
        let (pipe, trim_right) = self.pipeline(context)?;
        if context == Context::Range {
            self.range_depth += 1;
            for var in &pipe.decl {
                self.vars[var.0].range_depth = self.range_depth;
                self.vars[var.0].is_range_var = true;
            }
        }
        let body_result = self.item_list(false);
        if context == Context::Range {
            self.range_depth -= 1;
        }
        let (body, ending) = body_result?;
        let open = Tag {
            pos,
            trim_left,
            trim_right,
        };
        let result = match ending {
            Some(Ending::End(end)) => Control {
                open,
                pipe,
                body,
                otherwise: None,
                end,
            },
            Some(Ending::Else(tag, kind)) => match (kind, context) {
                (ElseKind::If, Context::If) => {
                    let chained = self.control(tag.pos, tag.trim_left, Context::If)?;
                    let end = chained.end;
                    Control {
                        open,
                        pipe,
                        body,
                        otherwise: Some(Else::Chain {
                            control: Box::new(chained),
                        }),
                        end,
                    }
                }
                (ElseKind::With, Context::With) => {
                    let chained = self.control(tag.pos, tag.trim_left, Context::With)?;
                    let end = chained.end;
                    Control {
                        open,
                        pipe,
                        body,
                        otherwise: Some(Else::Chain {
                            control: Box::new(chained),
                        }),
                        end,
                    }
                }
                (ElseKind::Plain, _) => {
                    let (else_body, ending) = self.item_list(false)?;
                    match ending {
                        Some(Ending::End(end)) => Control {
                            open,
                            pipe,
                            body,
                            otherwise: Some(Else::Plain {
                                tag,
                                body: else_body,
                            }),
                            end,
                        },
                        Some(Ending::Else(tag, _)) => {
                            return self.error(tag.pos, "expected end; found {{else}}");
                        }
                        None => return self.error(pos, "unexpected EOF"),
                    }
                }
                (ElseKind::If, _) | (ElseKind::With, _) => {
                    // `{{else if}}` inside a with (or the reverse) is an
                    // `{{else}}` whose body starts with an if: Go parses it
                    // as `else` followed by the keyword, which is an error
                    // in the middle of an else action.
                    return self.error(tag.pos, "unexpected keyword after {{else}}");
                }
            },
            None => return self.error(pos, "unexpected EOF"),
        };
        self.scope.truncate(mark);
        Ok(result)
    }

    fn declare(&mut self, name: &str) -> Var {
        let var = Var(self.vars.len());
        self.vars.push(VarInfo {
            name: name.trim_start_matches('$').to_string(),
            range_depth: self.range_depth,
            is_range_var: false,
            assigned_deeper: false,
        });
        self.scope.push(var);
        var
    }

    fn lookup(&self, pos: usize, name: &str) -> PResult<Var> {
        let bare = name.trim_start_matches('$');
        self.scope
            .iter()
            .rev()
            .find(|v| self.vars[v.0].name == bare)
            .copied()
            .ok_or_else(|| ParseError {
                pos,
                message: format!("undefined variable \"{name}\""),
            })
    }

    /// Parses a pipeline up to its closing `}}` (or `)` when `context` is a
    /// parenthesized pipeline); returns it and the closing delimiter's trim
    /// marker.
    fn pipeline(&mut self, context: Context) -> PResult<(Pipe, bool)> {
        let start = self.peek_non_space().pos;
        let mut pipe = Pipe {
            pos: start,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        let end_paren = context == Context::Paren;
        // Declarations: `$x :=`, `$x =`, `$i, $e :=` (range only).
        let mut pending: Vec<(usize, String)> = Vec::new();
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let save = self.at;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    self.next_non_space();
                    pipe.is_assign = next.kind == Kind::Assign;
                    pending.push((v.pos, v.val));
                    break;
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pending.push((v.pos, v.val));
                    if context == Context::Range && pending.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable => continue,
                            _ => {
                                return self.error(next.pos, "range can only initialize variables");
                            }
                        }
                    }
                    return self.error(
                        next.pos,
                        format!("too many declarations in {}", context.name()),
                    );
                }
                _ => {
                    self.at = save;
                    break;
                }
            }
        }
        if pending.len() == 2 && pipe.is_assign {
            return self.error(pending[0].0, "unsupported: range with `=` (assignment to range variables); declare them with `:=`");
        }
        // Parse the commands first: the declared names are not visible in
        // their own pipeline (Go pushes them before, but a use would be a
        // use of an undefined value; assignments must name an outer one).
        let trim_right;
        loop {
            let item = self.next_non_space();
            match item.kind {
                Kind::RightDelim { trim } if !end_paren => {
                    trim_right = trim;
                    break;
                }
                Kind::RightParen if end_paren => {
                    trim_right = false;
                    break;
                }
                Kind::Bool
                | Kind::CharConstant
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command(end_paren)?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&item, context.name()),
            }
        }
        if pipe.cmds.is_empty() {
            return self.error(start, format!("missing value for {}", context.name()));
        }
        for (i, cmd) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                cmd.args[0],
                Arg::Bool { .. }
                    | Arg::Dot { .. }
                    | Arg::Nil { .. }
                    | Arg::Number { .. }
                    | Arg::String { .. }
            ) {
                return self.error(
                    cmd.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                );
            }
        }
        for (pos, name) in pending {
            if pipe.is_assign {
                let var = self.lookup(pos, &name)?;
                if var.0 == 0 {
                    return self.error(pos, "unsupported: assignment to `$`");
                }
                if self.range_depth > self.vars[var.0].range_depth {
                    self.vars[var.0].assigned_deeper = true;
                }
                pipe.decl.push(var);
            } else {
                let var = self.declare(&name);
                pipe.decl.push(var);
            }
        }
        Ok((pipe, trim_right))
    }

    fn command(&mut self, in_paren: bool) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                args.push(operand);
            }
            let item = self.next();
            match item.kind {
                Kind::Space => continue,
                Kind::RightDelim { .. } if !in_paren => {
                    self.backup();
                    break;
                }
                Kind::RightParen if in_paren => {
                    self.backup();
                    break;
                }
                Kind::Pipe => break,
                _ => return self.unexpected(&item, "operand"),
            }
        }
        if args.is_empty() {
            return self.error(pos, "empty command");
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(term));
        }
        let mut path = Vec::new();
        while self.peek().kind == Kind::Field {
            let item = self.next();
            path.push(item.val[1..].to_string());
        }
        Ok(Some(match term {
            Arg::Field {
                pos,
                path: mut first,
            } => {
                first.extend(path);
                Arg::Field { pos, path: first }
            }
            Arg::Variable {
                pos,
                var,
                path: mut first,
            } => {
                first.extend(path);
                Arg::Variable {
                    pos,
                    var,
                    path: first,
                }
            }
            Arg::Bool { pos, .. }
            | Arg::String { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::Nil { pos }
            | Arg::Dot { pos } => {
                return self.error(pos, "unexpected . after term");
            }
            other => Arg::Chain {
                pos: other.pos(),
                base: Box::new(other),
                path,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let item = self.next_non_space();
        let pos = item.pos;
        Ok(Some(match item.kind {
            Kind::Identifier => {
                if !(self.is_function)(&item.val) {
                    return self.error(pos, format!("function \"{}\" not defined", item.val));
                }
                Arg::Ident {
                    pos,
                    name: item.val,
                }
            }
            Kind::Dot => Arg::Dot { pos },
            Kind::Nil => Arg::Nil { pos },
            Kind::Variable => {
                let var = self.lookup(pos, &item.val)?;
                Arg::Variable {
                    pos,
                    var,
                    path: Vec::new(),
                }
            }
            Kind::Field => Arg::Field {
                pos,
                path: vec![item.val[1..].to_string()],
            },
            Kind::Bool => Arg::Bool {
                pos,
                value: item.val == "true",
            },
            Kind::Number | Kind::CharConstant => Arg::Number {
                pos,
                value: number(&item).map_err(|message| ParseError { pos, message })?,
            },
            Kind::LeftParen => {
                let (pipe, _) = self.pipeline(Context::Paren)?;
                Arg::Pipe(Box::new(pipe))
            }
            Kind::String | Kind::RawString => Arg::String {
                pos,
                value: unquote(&item.val).map_err(|message| ParseError { pos, message })?,
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

enum Parsed {
    Node(Node),
    Ending(Ending),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Command,
    If,
    With,
    Range,
    Template,
    Paren,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Command => "command",
            Context::If => "if",
            Context::With => "with",
            Context::Range => "range",
            Context::Template => "template clause",
            Context::Paren => "parenthesized pipeline",
        }
    }
}

/// A number or character constant the way Go evaluates it for an
/// `interface{}` argument.
fn number(item: &Item) -> Result<Number, String> {
    let text = item.val.as_str();
    if item.kind == Kind::CharConstant {
        let s = unquote_char(text)?;
        return Ok(Number::Int(i64::from(u32::from(s))));
    }
    if text.ends_with('i') {
        return Err(format!(
            "unsupported: the complex number {text} (no YAML value has that type)"
        ));
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let lower = digits.to_ascii_lowercase();
    let is_hex = lower.starts_with("0x");
    let int = if is_hex {
        i64::from_str_radix(&lower[2..], 16).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|b| b.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    let looks_float = !is_hex && lower.contains(['.', 'e']) || is_hex && lower.contains('p');
    if !looks_float {
        if let Some(i) = int {
            return Ok(Number::Int(if negative { -i } else { i }));
        }
        if lower.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("unsupported: {text} is too large for an integer"));
        }
    }
    if is_hex {
        return Err(format!("unsupported: the hexadecimal float {text}"));
    }
    match lower.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Number::Float(if negative { -f } else { f })),
        _ => Err(format!("illegal number syntax: {text:?}")),
    }
}

/// Go's `strconv.Unquote` for a double-quoted or raw string literal.
pub(crate) fn unquote(text: &str) -> Result<String, String> {
    if let Some(raw) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
        // Go drops carriage returns from raw strings.
        return Ok(raw.replace('\r', ""));
    }
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Err(format!("invalid syntax: {text}"));
    };
    let mut bytes: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else {
            return Err(format!("invalid syntax: {text}"));
        };
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            bytes.push(b);
            continue;
        }
        match e {
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                let b =
                    u8::from_str_radix(&hex, 16).map_err(|_| format!("invalid syntax: {text}"))?;
                bytes.push(b);
            }
            '0'..='7' => {
                let mut oct = String::from(e);
                oct.extend(chars.by_ref().take(2));
                let b =
                    u8::from_str_radix(&oct, 8).map_err(|_| format!("invalid syntax: {text}"))?;
                bytes.push(b);
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let hex: String = chars.by_ref().take(n).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("invalid syntax: {text}"))?;
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(format!("invalid syntax: {text}")),
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| format!("unsupported: the string {text} is not valid UTF-8 text"))
}

fn unquote_char(text: &str) -> Result<char, String> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .ok_or_else(|| format!("malformed character constant: {text}"))?;
    let as_string = if inner == "\"" {
        "\"\\\"\"".to_string()
    } else if inner == "\\'" {
        "\"'\"".to_string()
    } else {
        format!("\"{inner}\"")
    };
    let s = unquote(&as_string).map_err(|_| format!("malformed character constant: {text}"))?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("malformed character constant: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_function(name: &str) -> bool {
        !name.is_empty()
    }

    fn parse_ok(src: &str) -> Template {
        parse(src, &any_function).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    fn parse_err(src: &str) -> String {
        parse(src, &any_function).unwrap_err().message
    }

    #[test]
    fn parses_controls_and_pipelines() {
        let t = parse_ok(
            "{{ range $i, $e := .l }}{{ $e.a | quote }}{{ else }}none{{ end }}{{ if .a }}x{{ else if .b }}y{{ end }}",
        );
        assert_eq!(t.nodes.len(), 2);
        let Node::Range(range) = &t.nodes[0] else {
            panic!()
        };
        assert_eq!(range.pipe.decl.len(), 2);
        assert!(t.vars[range.pipe.decl[1].0].is_range_var);
        let Node::If(control) = &t.nodes[1] else {
            panic!()
        };
        assert!(matches!(control.otherwise, Some(Else::Chain { .. })));
    }

    #[test]
    fn assignments_inside_range_are_marked() {
        let t = parse_ok(
            "{{ $n := 0 }}{{ range .l }}{{ $n = 1 }}{{ end }}{{ $m := 0 }}{{ if .x }}{{ $m = 1 }}{{ end }}",
        );
        assert!(t.vars[1].assigned_deeper);
        assert!(!t.vars[2].assigned_deeper);
    }

    #[test]
    fn go_errors() {
        assert_eq!(parse_err("{{ $x }}"), "undefined variable \"$x\"");
        assert_eq!(
            parse_err("{{ if .a }}{{ $x := 1 }}{{ end }}{{ $x }}"),
            "undefined variable \"$x\""
        );
        assert_eq!(parse_err("{{ end }}"), "unexpected {{end}}");
        assert_eq!(parse_err("{{ if .a }}"), "unexpected EOF");
        assert_eq!(parse_err("{{ break }}"), "{{break}} outside {{range}}");
        assert_eq!(parse_err("{{ }}"), "missing value for command");
        assert_eq!(
            parse_err("{{ .a | \"x\" }}"),
            "non executable command in pipeline stage 2"
        );
        assert!(parse_err("{{ define \"x\" }}{{ end }}").starts_with("unsupported: {{define}}"));
    }

    #[test]
    fn strings_and_numbers() {
        assert_eq!(unquote(r#""a\tb\x41\u00e9\101""#).unwrap(), "a\tbAéA");
        assert_eq!(unquote("`a\\n\r`").unwrap(), "a\\n");
        let num = |s: &str| {
            number(&Item {
                kind: Kind::Number,
                pos: 0,
                val: s.into(),
            })
        };
        assert_eq!(num("0x1F"), Ok(Number::Int(31)));
        assert_eq!(num("1_000"), Ok(Number::Int(1000)));
        assert_eq!(num("-3"), Ok(Number::Int(-3)));
        assert_eq!(num("1.5"), Ok(Number::Float(1.5)));
        assert_eq!(num("1e3"), Ok(Number::Float(1000.0)));
        assert_eq!(num("010"), Ok(Number::Int(8)));
        let c = number(&Item {
            kind: Kind::CharConstant,
            pos: 0,
            val: "'a'".into(),
        });
        assert_eq!(c, Ok(Number::Int(97)));
    }
}
