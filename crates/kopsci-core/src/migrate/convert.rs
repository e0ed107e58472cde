//! Go template AST → Jinja source that kopsci renders to the same bytes.
//!
//! The parts of Go's semantics Jinja does not share are made explicit here:
//!
//! * Scoping. Go scopes a variable to its `if`/`with`/`range`; Jinja's `if`
//!   does not scope and its `for` does. Every Go variable gets a Jinja name
//!   unique among the names visible at its declaration, and a variable
//!   assigned (`$x = …`) from inside a nested `range` lives in a
//!   `namespace`, so the assignment survives the loop as in Go.
//! * Names. A field of the root data is a bare Jinja name, so no Jinja
//!   variable may take the name of any field the file reads, nor of a Jinja
//!   keyword or global function.
//! * Dot. `.` inside `range`/`with` is the loop or `with` variable; `$` is
//!   the file's root data (captured once with `go_root()` when a file needs
//!   it whole).
//! * Whitespace. `{{-`/`-}}` become Jinja's `-` markers when Jinja would trim
//!   exactly what Go trims (Go trims only space, tab, CR and LF; Jinja every
//!   Unicode space); otherwise the text is trimmed here and written without
//!   a marker.
//! * Functions. Operators and Jinja built-ins where they agree with Go and
//!   Sprig on every input kOps accepts; otherwise the compatibility helpers
//!   of `render::sprig` (`go_*`, `sprig_*`, `kops_indent`).

use std::collections::{HashMap, HashSet};

use super::parse::{Arg, Command, Control, Else, Node, Number, Pipe, Tag, Template, Var};
use super::{MapOrder, Note, Options, Role};

/// Operator precedence of an emitted Jinja expression, loosest first.
const TERNARY: u8 = 1;
const OR: u8 = 2;
const AND: u8 = 3;
const NOT: u8 = 4;
const CMP: u8 = 5;
const ADD: u8 = 6;
const MUL: u8 = 7;
const UNARY: u8 = 8;
const FILTER: u8 = 9;
const PRIMARY: u8 = 10;

/// A Jinja expression and its precedence.
#[derive(Debug, Clone)]
struct Expr {
    text: String,
    prec: u8,
    /// Whether it is the file's root data (`$`, or `.` at the top level).
    root: bool,
    /// The Go source of a constant string (for names in notes).
    literal: Option<String>,
}

impl Expr {
    fn new(text: impl Into<String>, prec: u8) -> Expr {
        Expr {
            text: text.into(),
            prec,
            root: false,
            literal: None,
        }
    }

    /// The text, parenthesized when looser than `min`.
    fn at(&self, min: u8) -> String {
        if self.prec < min {
            format!("({})", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// One problem, at a byte offset.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub pos: usize,
    pub message: String,
}

/// Names a Jinja variable may never take: keywords, literals, minijinja's
/// globals and the functions the converted templates call.
const RESERVED: &[&str] = &[
    "and",
    "as",
    "autoescape",
    "block",
    "break",
    "call",
    "caller",
    "continue",
    "debug",
    "dict",
    "do",
    "elif",
    "else",
    "endautoescape",
    "endblock",
    "endcall",
    "endfilter",
    "endfor",
    "endif",
    "endmacro",
    "endraw",
    "endset",
    "endwith",
    "extends",
    "false",
    "False",
    "filter",
    "for",
    "from",
    "if",
    "import",
    "in",
    "include",
    "is",
    "kwargs",
    "loop",
    "macro",
    "namespace",
    "none",
    "None",
    "not",
    "or",
    "range",
    "raw",
    "recursive",
    "self",
    "semver_compare",
    "set",
    "super",
    "toyaml",
    "tojson",
    "true",
    "True",
    "varargs",
    "with",
    "_root",
];

fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
        || name.starts_with("go_")
        || name.starts_with("sprig_")
        || name.starts_with("kops_")
}

/// Whether `name` can be written as a bare Jinja identifier or attribute.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Jinja string literal for `s`.
pub(crate) fn jinja_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn float_literal(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f:?}")
    }
}

/// How a Go variable is spelled in Jinja.
#[derive(Debug, Clone)]
struct Binding {
    name: String,
    /// Held in a `namespace` as `.value`.
    ns: bool,
}

#[derive(Debug, Clone)]
enum Dot {
    Root,
    Expr(Expr),
}

/// What the output is made of before whitespace trimming is settled.
#[derive(Debug)]
enum Piece {
    Text(String),
    Tag {
        open: &'static str,
        body: String,
        close: &'static str,
        trim_left: bool,
        trim_right: bool,
        /// Written without the spaces around the body (comments).
        verbatim: bool,
    },
}

pub(crate) struct Converted {
    pub jinja: String,
    pub notes: Vec<(usize, Note)>,
}

pub(crate) struct Converter<'a> {
    tpl: &'a Template,
    opts: &'a Options,
    role: Role,
    pieces: Vec<Piece>,
    bindings: HashMap<Var, Binding>,
    /// Jinja names visible at this point of the Go scoping, innermost last.
    visible: Vec<String>,
    /// Field names the file reads from its data, plus reserved words.
    taken: HashSet<String>,
    /// How many emitted expressions read `_root` (`go_root()` is only
    /// captured when some do).
    root_uses: usize,
    dot: Dot,
    problems: Vec<Problem>,
    notes: Vec<(usize, Note)>,
    /// Channel function calls already given a value name: source → name.
    channel_values: Vec<(String, String)>,
    src: &'a str,
}

impl<'a> Converter<'a> {
    pub fn new(src: &'a str, tpl: &'a Template, opts: &'a Options, role: Role) -> Self {
        let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        collect_fields(&tpl.nodes, &mut taken);
        let mut bindings = HashMap::new();
        bindings.insert(
            Var(0),
            Binding {
                name: "_root".to_string(),
                ns: false,
            },
        );
        Converter {
            tpl,
            opts,
            role,
            pieces: Vec::new(),
            bindings,
            visible: Vec::new(),
            taken,
            root_uses: 0,
            dot: Dot::Root,
            problems: Vec::new(),
            notes: Vec::new(),
            channel_values: Vec::new(),
            src,
        }
    }

    pub fn run(mut self) -> Result<Converted, Vec<Problem>> {
        let nodes = &self.tpl.nodes;
        self.nodes(nodes);
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        let mut jinja = String::new();
        if self.root_uses > 0 {
            // Before anything else is set, the known variables are exactly
            // the file's data: go_root() turns them into the map `$` is.
            jinja.push_str("{% set _root = go_root() %}");
        }
        jinja.push_str(&finish(self.pieces));
        Ok(Converted {
            jinja,
            notes: self.notes,
        })
    }

    fn problem(&mut self, pos: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            message: message.into(),
        });
    }

    fn unsupported(&mut self, pos: usize, what: &str, hint: &str) -> Expr {
        self.problem(pos, format!("unsupported: {what} ({hint})"));
        Expr::new("none", PRIMARY)
    }

    fn note(&mut self, pos: usize, note: Note) {
        self.notes.push((pos, note));
    }

    // -- names ---------------------------------------------------------------

    /// A fresh Jinja name for a variable called `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut clean: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
            clean.insert(0, 'v');
        }
        let mut name = clean.clone();
        let mut n = 2;
        while is_reserved(&name) || self.taken.contains(&name) || self.visible.contains(&name) {
            name = format!("{clean}_{n}");
            n += 1;
        }
        self.visible.push(name.clone());
        name
    }

    fn declare(&mut self, var: Var) -> Binding {
        let info = &self.tpl.vars[var.0];
        let ns = info.assigned_deeper;
        let base = info.name.clone();
        let binding = Binding {
            name: self.fresh(&base),
            ns,
        };
        self.bindings.insert(var, binding.clone());
        binding
    }

    fn var_expr(&mut self, var: Var) -> Expr {
        if var.0 == 0 {
            return self.root_expr();
        }
        match self.bindings.get(&var) {
            Some(b) if b.ns => Expr::new(format!("{}.value", b.name), PRIMARY),
            Some(b) => Expr::new(b.name.clone(), PRIMARY),
            // Declared in a branch that did not run (Go fails at run time).
            None => Expr::new("none", PRIMARY),
        }
    }

    fn root_expr(&mut self) -> Expr {
        self.root_uses += 1;
        Expr {
            text: "_root".to_string(),
            prec: PRIMARY,
            root: true,
            literal: None,
        }
    }

    fn dot_expr(&mut self) -> Expr {
        match self.dot.clone() {
            Dot::Root => self.root_expr(),
            Dot::Expr(e) => e,
        }
    }

    /// `base.a.b`, where `base` is the root data when `root`.
    fn fields(&mut self, base: Option<Expr>, path: &[String], pos: usize) -> Expr {
        let mut segments = path.iter();
        let mut expr = match base {
            Some(e) => e,
            None => {
                let first = segments.next().expect("a field path is never empty");
                if is_identifier(first) && !is_reserved(first) {
                    Expr::new(first.clone(), PRIMARY)
                } else {
                    let root = self.root_expr();
                    Expr::new(format!("{}[{}]", root.text, jinja_string(first)), PRIMARY)
                }
            }
        };
        let rest: Vec<&String> = segments.collect();
        if rest.is_empty() {
            return expr;
        }
        if !self.opts.fail_on_missing {
            // Go's missingkey=default: a missing key anywhere in the chain
            // is "no value", not an error.
            let args: Vec<String> = rest.iter().map(|s| jinja_string(s)).collect();
            return Expr::new(
                format!("{} | go_path({})", expr.at(UNARY), args.join(", ")),
                FILTER,
            );
        }
        let _ = pos;
        let mut text = expr.at(PRIMARY);
        for seg in rest {
            if is_identifier(seg) && !RESERVED.contains(&seg.as_str()) {
                text.push('.');
                text.push_str(seg);
            } else {
                text.push_str(&format!("[{}]", jinja_string(seg)));
            }
        }
        expr = Expr::new(text, PRIMARY);
        expr
    }

    // -- output --------------------------------------------------------------

    fn text(&mut self, raw: &str) {
        self.pieces.push(Piece::Text(raw.to_string()));
    }

    /// Emits Jinja tags standing for one Go action: the action's left trim
    /// marker goes on the first, its right one on the last.
    fn tags(&mut self, tag: Tag, tags: Vec<(&'static str, String)>) {
        let count = tags.len();
        for (i, (kind, body)) in tags.into_iter().enumerate() {
            let (open, close) = match kind {
                "expr" => ("{{", "}}"),
                "comment" => ("{#", "#}"),
                _ => ("{%", "%}"),
            };
            self.pieces.push(Piece::Tag {
                open,
                body,
                close,
                trim_left: i == 0 && tag.trim_left,
                trim_right: i + 1 == count && tag.trim_right,
                verbatim: false,
            });
        }
    }

    fn stmt(&mut self, tag: Tag, body: impl Into<String>) {
        self.tags(tag, vec![("stmt", body.into())]);
    }

    // -- nodes ---------------------------------------------------------------

    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.node(node);
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Text { raw } => self.text(raw),
            Node::Comment { tag, text } => {
                // The comment keeps its own spacing and line breaks; only a
                // `#}` inside, or a dash where Jinja would read a trim
                // marker, is changed.
                let mut text = text.replace("#}", "# }");
                if text.starts_with(['-', '+']) {
                    text.insert(0, ' ');
                }
                if text.ends_with('-') {
                    text.push(' ');
                }
                self.pieces.push(Piece::Tag {
                    open: "{#",
                    body: text,
                    close: "#}",
                    trim_left: tag.trim_left,
                    trim_right: tag.trim_right,
                    verbatim: true,
                });
            }
            Node::Action { tag, pipe } => self.action(*tag, pipe),
            Node::If(control) => {
                let mark = self.visible.len();
                let extra = self.if_chain(control, "if");
                self.end_tags(control.end, 1 + extra, "endif");
                self.visible.truncate(mark);
            }
            Node::With(control) => {
                let mark = self.visible.len();
                let extra = self.with_chain(control, false);
                self.end_tags(control.end, 1 + extra, "endif");
                self.visible.truncate(mark);
            }
            Node::Range(control) => {
                let mark = self.visible.len();
                self.range(control);
                self.visible.truncate(mark);
            }
            Node::Template { tag, name, pipe } => {
                let ctx = match pipe {
                    Some(pipe) => self.pipe(pipe),
                    None => Expr::new("none", PRIMARY),
                };
                let call = self.include_call(Expr::new(jinja_string(name), PRIMARY), ctx);
                self.tags(*tag, vec![("expr", call.text)]);
            }
            Node::Break(tag) => self.stmt(*tag, "break"),
            Node::Continue(tag) => self.stmt(*tag, "continue"),
        }
    }

    fn action(&mut self, tag: Tag, pipe: &Pipe) {
        let value = self.pipe(pipe);
        if pipe.decl.is_empty() {
            self.tags(tag, vec![("expr", value.text)]);
            return;
        }
        let var = pipe.decl[0];
        let body = self.assign(var, pipe.is_assign, &value);
        self.stmt(tag, body);
    }

    /// The `set` statement for `$var := value` or `$var = value`.
    fn assign(&mut self, var: Var, is_assign: bool, value: &Expr) -> String {
        if is_assign {
            match self.bindings.get(&var).cloned() {
                Some(b) if b.ns => format!("set {}.value = {}", b.name, value.text),
                Some(b) => format!("set {} = {}", b.name, value.text),
                None => format!("set {} = {}", self.var_expr(var).text, value.text),
            }
        } else {
            let b = self.declare(var);
            if b.ns {
                format!("set {} = namespace(value={})", b.name, value.text)
            } else {
                format!("set {} = {}", b.name, value.text)
            }
        }
    }

    /// An `if` and its `else if` chain; returns how many extra `endif`s
    /// the shared `{{ end }}` must close (one per `else if` that declares a
    /// variable, which needs `else` + `set` + a nested `if`).
    fn if_chain(&mut self, control: &Control, keyword: &str) -> usize {
        let cond = self.pipe(&control.pipe);
        let mut extra = 0;
        let tags = match control.pipe.decl.first() {
            Some(&var) => {
                let set = self.assign(var, control.pipe.is_assign, &cond);
                let test = self.var_expr(var);
                let mut tags = Vec::new();
                if keyword == "elif" {
                    tags.push(("stmt", "else".to_string()));
                    extra += 1;
                }
                tags.push(("stmt", set));
                tags.push(("stmt", format!("if {}", test.text)));
                tags
            }
            // `{% if %}` takes no bare ternary.
            None => vec![("stmt", format!("{keyword} {}", cond.at(OR)))],
        };
        self.tags(control.open, tags);
        self.nodes(&control.body);
        match &control.otherwise {
            None => {}
            Some(Else::Plain { tag, body }) => {
                self.stmt(*tag, "else");
                self.nodes(body);
            }
            Some(Else::Chain { control: chained }) => {
                extra += self.if_chain(chained, "elif");
            }
        }
        extra
    }

    fn end_tags(&mut self, end: Tag, count: usize, word: &str) {
        let tags = (0..count).map(|_| ("stmt", word.to_string())).collect();
        self.tags(end, tags);
    }

    /// A `with` (and its `else with` chain) as `set` + `if`; returns how
    /// many nested `if`s the chain opened beyond the first.
    fn with_chain(&mut self, control: &Control, is_else: bool) -> usize {
        let value = self.pipe(&control.pipe);
        let (set, name) = match control.pipe.decl.first() {
            Some(&var) => {
                let set = self.assign(var, control.pipe.is_assign, &value);
                (set, self.var_expr(var))
            }
            None => {
                let base = with_name(&control.pipe);
                let name = self.fresh(&base);
                (
                    format!("set {name} = {}", value.text),
                    Expr::new(name, PRIMARY),
                )
            }
        };
        let mut tags = Vec::new();
        if is_else {
            tags.push(("stmt", "else".to_string()));
        }
        tags.push(("stmt", set));
        tags.push(("stmt", format!("if {}", name.text)));
        self.tags(control.open, tags);
        let saved = std::mem::replace(&mut self.dot, Dot::Expr(name));
        self.nodes(&control.body);
        self.dot = saved;
        match &control.otherwise {
            None => 0,
            Some(Else::Plain { tag, body }) => {
                self.stmt(*tag, "else");
                self.nodes(body);
                0
            }
            Some(Else::Chain { control: chained }) => 1 + self.with_chain(chained, true),
        }
    }

    fn range(&mut self, control: &Control) {
        let value = self.pipe(&control.pipe);
        let sorted = match self.opts.map_order {
            MapOrder::Sorted => "",
            MapOrder::Values => "(sorted=false)",
        };
        let mut after = Vec::new();
        let (targets, filter, dot) = match control.pipe.decl.as_slice() {
            [] => {
                let name = self.fresh("item");
                (name.clone(), "go_range", Expr::new(name, PRIMARY))
            }
            [one] => {
                let b = self.loop_var(*one, &mut after);
                let dot = self.var_expr(*one);
                (b, "go_range", dot)
            }
            [key, elem, ..] => {
                let k = self.loop_var(*key, &mut after);
                let e = self.loop_var(*elem, &mut after);
                let dot = self.var_expr(*elem);
                (format!("{k}, {e}"), "go_items", dot)
            }
        };
        let mut tags = vec![(
            "stmt",
            format!("for {targets} in {} | {filter}{sorted}", value.at(UNARY)),
        )];
        tags.extend(after.into_iter().map(|s| ("stmt", s)));
        self.tags(control.open, tags);
        let saved = std::mem::replace(&mut self.dot, Dot::Expr(dot));
        self.nodes(&control.body);
        self.dot = saved;
        if let Some(Else::Plain { tag, body }) = &control.otherwise {
            self.stmt(*tag, "else");
            self.nodes(body);
        }
        self.end_tags(control.end, 1, "endfor");
    }

    /// The loop target for a range variable; one assigned from a nested
    /// range is copied into a namespace first.
    fn loop_var(&mut self, var: Var, after: &mut Vec<String>) -> String {
        let b = self.declare(var);
        if b.ns {
            let item = self.fresh(&format!("{}_item", b.name));
            after.push(format!("set {} = namespace(value={item})", b.name));
            item
        } else {
            b.name
        }
    }

    // -- pipelines -----------------------------------------------------------

    fn pipe(&mut self, pipe: &Pipe) -> Expr {
        let mut acc: Option<Expr> = None;
        for cmd in &pipe.cmds {
            acc = Some(self.command(cmd, acc));
        }
        acc.unwrap_or_else(|| Expr::new("none", PRIMARY))
    }

    fn command(&mut self, cmd: &Command, piped: Option<Expr>) -> Expr {
        match &cmd.args[0] {
            Arg::Ident { pos, name } => {
                let mut args: Vec<Expr> = cmd.args[1..].iter().map(|a| self.arg(a)).collect();
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(*pos, name, args, cmd)
            }
            first => {
                if cmd.args.len() > 1 || piped.is_some() {
                    self.problem(
                        first.pos(),
                        "can't give argument to non-function (only functions take arguments)",
                    );
                }
                self.arg(first)
            }
        }
    }

    fn arg(&mut self, arg: &Arg) -> Expr {
        match arg {
            Arg::Field { pos, path } => match self.dot.clone() {
                Dot::Root => self.fields(None, path, *pos),
                Dot::Expr(e) => self.fields(Some(e), path, *pos),
            },
            Arg::Variable { pos, var, path } => {
                if var.0 == 0 && !path.is_empty() {
                    return self.fields(None, path, *pos);
                }
                let base = self.var_expr(*var);
                if path.is_empty() {
                    base
                } else {
                    self.fields(Some(base), path, *pos)
                }
            }
            Arg::Chain { pos, base, path } => {
                let base = self.arg(base);
                let base = Expr::new(base.at(PRIMARY), PRIMARY);
                self.fields(Some(base), path, *pos)
            }
            Arg::Ident { pos, name } => self.call(
                *pos,
                name,
                Vec::new(),
                &Command {
                    pos: *pos,
                    args: Vec::new(),
                },
            ),
            Arg::Dot { .. } => self.dot_expr(),
            Arg::Nil { .. } => Expr::new("none", PRIMARY),
            Arg::Bool { value, .. } => Expr::new(if *value { "true" } else { "false" }, PRIMARY),
            Arg::Number { value, .. } => match value {
                Number::Int(i) if *i < 0 => Expr::new(i.to_string(), UNARY),
                Number::Int(i) => Expr::new(i.to_string(), PRIMARY),
                Number::Float(f) if *f < 0.0 => Expr::new(float_literal(*f), UNARY),
                Number::Float(f) => Expr::new(float_literal(*f), PRIMARY),
            },
            Arg::String { value, .. } => Expr {
                text: jinja_string(value),
                prec: PRIMARY,
                root: false,
                literal: Some(value.clone()),
            },
            Arg::Pipe(pipe) => {
                if !pipe.decl.is_empty() {
                    return self.unsupported(
                        pipe.pos,
                        "a declaration inside parentheses",
                        "declare the variable in its own action first",
                    );
                }
                self.pipe(pipe)
            }
        }
    }

    fn include_call(&mut self, name: Expr, ctx: Expr) -> Expr {
        if ctx.root && self.role == Role::Template {
            // A template's root data is what include() passes by default.
            self.root_uses -= 1;
            return Expr::new(format!("include({})", name.text), PRIMARY);
        }
        Expr::new(format!("include({}, {})", name.text, ctx.text), PRIMARY)
    }

    /// A Go or Sprig function call with its (already converted) arguments.
    /// `raw` holds the Go arguments when nothing was piped in.
    fn call(&mut self, pos: usize, name: &str, args: Vec<Expr>, cmd: &Command) -> Expr {
        let n = args.len();
        let want = |this: &mut Self, ok: bool, expected: &str| -> bool {
            if !ok {
                this.problem(
                    pos,
                    format!("wrong number of args for {name}: want {expected} got {n}"),
                );
            }
            ok
        };
        let filter = |subject: &Expr, f: &str, extra: &[&Expr]| -> Expr {
            let args: Vec<String> = extra.iter().map(|e| e.text.clone()).collect();
            let call = if args.is_empty() {
                f.to_string()
            } else {
                format!("{f}({})", args.join(", "))
            };
            Expr::new(format!("{} | {call}", subject.at(UNARY)), FILTER)
        };
        let function = |f: &str, args: &[Expr]| -> Expr {
            let list: Vec<String> = args.iter().map(|e| e.text.clone()).collect();
            Expr::new(format!("{f}({})", list.join(", ")), PRIMARY)
        };
        let none = || Expr::new("none", PRIMARY);
        if let Some(value) = channel_value_name(name) {
            return self.channel(pos, name, value, cmd);
        }
        match name {
            // Go's built-in functions.
            "and" | "or" => {
                if !want(self, n >= 1, "at least 1") {
                    return none();
                }
                if n == 1 {
                    return args.into_iter().next().expect("one argument");
                }
                let (word, prec, min) = if name == "and" {
                    ("and", AND, NOT)
                } else {
                    ("or", OR, AND)
                };
                let parts: Vec<String> = args.iter().map(|a| a.at(min)).collect();
                Expr::new(parts.join(&format!(" {word} ")), prec)
            }
            "not" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                Expr::new(format!("not {}", args[0].at(NOT)), NOT)
            }
            "eq" => {
                if !want(self, n >= 2, "at least 2") {
                    return none();
                }
                if n == 2 {
                    return Expr::new(format!("{} == {}", args[0].at(ADD), args[1].at(ADD)), CMP);
                }
                let rest: Vec<String> = args[1..].iter().map(|a| a.text.clone()).collect();
                Expr::new(format!("{} in [{}]", args[0].at(ADD), rest.join(", ")), CMP)
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                let op = match name {
                    "ne" => "!=",
                    "lt" => "<",
                    "le" => "<=",
                    "gt" => ">",
                    _ => ">=",
                };
                Expr::new(format!("{} {op} {}", args[0].at(ADD), args[1].at(ADD)), CMP)
            }
            "index" => {
                if !want(self, n >= 1, "at least 1") {
                    return none();
                }
                if n == 1 {
                    return args.into_iter().next().expect("one argument");
                }
                function("go_index", &args)
            }
            "len" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                filter(&args[0], "go_len", &[])
            }
            "print" => function("go_print", &args),
            "println" => function("go_println", &args),
            "printf" => {
                if !want(self, n >= 1, "at least 1") {
                    return none();
                }
                function("go_printf", &args)
            }
            // kOps' own.
            "include" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                let mut it = args.into_iter();
                let name = it.next().expect("two arguments");
                let ctx = it.next().expect("two arguments");
                self.include_call(name, ctx)
            }
            "indent" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                filter(&args[1], "kops_indent", &[&args[0]])
            }
            // Sprig.
            "nindent" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                filter(&args[1], "sprig_nindent", &[&args[0]])
            }
            "default" => match n {
                0 => {
                    want(self, false, "at least 1");
                    none()
                }
                1 => args.into_iter().next().expect("one argument"),
                2 => filter(&args[1], "sprig_default", &[&args[0]]),
                _ => self.unsupported(
                    pos,
                    "default with more than one value",
                    "Sprig only looks at the first: drop the others",
                ),
            },
            "quote" | "squote" => {
                let f = if name == "quote" { "sprig_quote" } else { "sprig_squote" };
                match n {
                    0 => Expr::new("\"\"", PRIMARY),
                    1 => filter(&args[0], f, &[]),
                    _ => function(f, &args),
                }
            }
            "toJson" | "toPrettyJson" | "toRawJson" | "b64enc" | "b64dec" | "upper" | "lower"
            | "kindOf" | "typeOf" | "toString" | "int" | "int64" | "float64" | "atoi" | "first"
            | "last" | "keys" | "sortAlpha" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                let f = match name {
                    "toJson" => "sprig_tojson",
                    "toPrettyJson" => "sprig_toprettyjson",
                    "toRawJson" => "sprig_torawjson",
                    "b64enc" => "sprig_b64enc",
                    "b64dec" => "sprig_b64dec",
                    "upper" => "sprig_upper",
                    "lower" => "sprig_lower",
                    "kindOf" => "sprig_kind_of",
                    "typeOf" => "sprig_type_of",
                    "toString" => "sprig_tostring",
                    "int" | "int64" => "sprig_int",
                    "float64" => "sprig_float",
                    "atoi" => "sprig_atoi",
                    "first" => "sprig_first",
                    "last" => "sprig_last",
                    "keys" => "sprig_keys",
                    _ => "sprig_sort_alpha",
                };
                filter(&args[0], f, &[])
            }
            "kindIs" | "typeIs" | "trimPrefix" | "trimSuffix" | "join" | "split" | "splitList"
            | "trunc" | "repeat" | "has" | "get" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                let f = match name {
                    "kindIs" => "sprig_kind_is",
                    "typeIs" => "sprig_type_is",
                    "trimPrefix" => "sprig_trim_prefix",
                    "trimSuffix" => "sprig_trim_suffix",
                    "join" => "sprig_join",
                    "split" => "sprig_split",
                    "splitList" => "sprig_split_list",
                    "trunc" => "sprig_trunc",
                    "repeat" => "sprig_repeat",
                    "has" => "sprig_has",
                    _ => "sprig_get",
                };
                // Sprig's subject is the last argument except for get.
                if name == "get" {
                    filter(&args[0], f, &[&args[1]])
                } else {
                    filter(&args[1], f, &[&args[0]])
                }
            }
            "trim" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                filter(&args[0], "trim", &[])
            }
            "trimAll" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                filter(&args[1], "trim", &[&args[0]])
            }
            "replace" => {
                if !want(self, n == 3, "3") {
                    return none();
                }
                filter(&args[2], "replace", &[&args[0], &args[1]])
            }
            "substr" => {
                if !want(self, n == 3, "3") {
                    return none();
                }
                filter(&args[2], "sprig_substr", &[&args[0], &args[1]])
            }
            "hasPrefix" | "hasSuffix" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                let test = if name == "hasPrefix" {
                    "startingwith"
                } else {
                    "endingwith"
                };
                Expr::new(
                    format!("{} is {test}({})", args[1].at(UNARY), args[0].text),
                    FILTER,
                )
            }
            "contains" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                Expr::new(format!("{} in {}", args[0].at(ADD), args[1].at(ADD)), CMP)
            }
            "list" | "tuple" => {
                let items: Vec<String> = args.iter().map(|a| a.text.clone()).collect();
                Expr::new(format!("[{}]", items.join(", ")), PRIMARY)
            }
            "dict" => self.dict(&args),
            "hasKey" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                if args[0].root
                    && let Some(key) = &args[1].literal
                    && is_identifier(key)
                    && !is_reserved(key)
                    && self.taken.contains(key)
                {
                    // `hasKey $ "x"`: a key of the data is a variable.
                    self.root_uses -= 1;
                    return Expr::new(format!("{key} is defined"), FILTER);
                }
                Expr::new(format!("{} in {}", args[1].at(ADD), args[0].at(ADD)), CMP)
            }
            "empty" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                Expr::new(format!("not {}", args[0].at(NOT)), NOT)
            }
            "ternary" => {
                if !want(self, n == 3, "3") {
                    return none();
                }
                Expr::new(
                    format!(
                        "{} if {} else {}",
                        args[0].at(OR),
                        args[2].at(OR),
                        args[1].at(TERNARY)
                    ),
                    TERNARY,
                )
            }
            "semverCompare" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                function("semver_compare", &[args[1].clone(), args[0].clone()])
            }
            "fail" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                function("sprig_fail", &args)
            }
            "coalesce" => function("sprig_coalesce", &args),
            "until" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                function("sprig_until", &args)
            }
            "add" | "mul" | "max" | "min" => {
                if !want(self, n >= 1, "at least 1") {
                    return none();
                }
                function(&format!("sprig_{name}"), &args)
            }
            "sub" | "div" | "mod" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                function(&format!("sprig_{name}"), &args)
            }
            "add1" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                function("sprig_add1", &args)
            }
            "append" | "push" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                Expr::new(format!("{} + [{}]", args[0].at(MUL), args[1].text), ADD)
            }
            "prepend" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                Expr::new(format!("[{}] + {}", args[1].text, args[0].at(MUL)), ADD)
            }
            "concat" => {
                if n == 0 {
                    return Expr::new("[]", PRIMARY);
                }
                let parts: Vec<String> = args.iter().map(|a| a.at(MUL)).collect();
                Expr::new(parts.join(" + "), ADD)
            }
            "set" => {
                if !want(self, n == 3, "3") {
                    return none();
                }
                function("sprig_set", &args)
            }
            "unset" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                function("sprig_unset", &args)
            }
            // Helm's, not kOps': converted, with a note.
            "toYaml" => {
                if !want(self, n == 1, "1") {
                    return none();
                }
                self.note(pos, Note::Helm { function: "toYaml".into() });
                filter(&args[0], "toyaml", &[])
            }
            "required" => {
                if !want(self, n == 2, "2") {
                    return none();
                }
                self.note(pos, Note::Helm { function: "required".into() });
                filter(&args[1], "required", &[&args[0]])
            }
            "slice" => self.unsupported(
                pos,
                "slice",
                "use substr for strings; for lists, build the list you need with list",
            ),
            "html" | "js" | "urlquery" => self.unsupported(
                pos,
                name,
                "escaping for HTML, JavaScript or URLs has no place in a kOps manifest",
            ),
            "call" => self.unsupported(pos, "call", "kOps values hold no functions"),
            "merge" | "mergeOverwrite" | "mustMerge" | "mustMergeOverwrite" => self.unsupported(
                pos,
                name,
                "Sprig merges deeply and skips empty values; copy the keys you need with range and set",
            ),
            "env" | "expandenv" => self.unsupported(
                pos,
                name,
                "templates must not depend on the environment of the job: pass the value with --set",
            ),
            "now" | "date" | "dateInZone" | "date_in_zone" | "dateModify" | "date_modify"
            | "htmlDate" | "htmlDateInZone" | "ago" | "unixEpoch" | "toDate" | "mustToDate"
            | "duration" | "durationRound" | "mustDateModify" | "must_date_modify" => self
                .unsupported(
                    pos,
                    name,
                    "a manifest that changes with the clock is never up to date: pass the value with --set",
                ),
            "randAlphaNum" | "randAlpha" | "randAscii" | "randNumeric" | "randInt" | "randBytes"
            | "uuidv4" | "shuffle" | "genPrivateKey" | "genCA" | "genCAWithKey"
            | "genSelfSignedCert" | "genSelfSignedCertWithKey" | "genSignedCert"
            | "genSignedCertWithKey" | "buildCustomCert" | "bcrypt" | "htpasswd"
            | "derivePassword" | "encryptAES" | "decryptAES" => self.unsupported(
                pos,
                name,
                "random or secret material does not belong in a reviewed manifest",
            ),
            _ => self.unsupported(
                pos,
                &format!("the Sprig function {name}"),
                "kopsci migrate converts the functions listed in docs/migrate.md; rewrite this with those",
            ),
        }
    }

    fn dict(&mut self, args: &[Expr]) -> Expr {
        let literal_keys = args.iter().step_by(2).all(|k| k.literal.is_some());
        if self.opts.mutable_dicts || !literal_keys {
            let list: Vec<String> = args.iter().map(|e| e.text.clone()).collect();
            return Expr::new(format!("sprig_dict({})", list.join(", ")), PRIMARY);
        }
        // Sprig keeps the last of repeated keys and gives a lone last key "".
        let mut entries: Vec<(String, String)> = Vec::new();
        for pair in args.chunks(2) {
            let key = pair[0].literal.clone().unwrap_or_default();
            let value = pair
                .get(1)
                .map(|v| v.text.clone())
                .unwrap_or_else(|| "\"\"".to_string());
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        let items: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}: {v}", jinja_string(k)))
            .collect();
        Expr::new(format!("{{{}}}", items.join(", ")), PRIMARY)
    }

    /// A kOps channel function: the value it would look up becomes a
    /// required value of the data.
    fn channel(&mut self, pos: usize, function: &str, value: &str, cmd: &Command) -> Expr {
        let call_text = self.src[cmd.pos..]
            .split("}}")
            .next()
            .unwrap_or(function)
            .split('|')
            .next()
            .unwrap_or(function)
            .trim()
            .trim_end_matches(['-', ')'])
            .trim()
            .to_string();
        let name = match self.channel_values.iter().find(|(c, _)| *c == call_text) {
            Some((_, name)) => name.clone(),
            None => {
                let count = self
                    .channel_values
                    .iter()
                    .filter(|(_, n)| n.starts_with(value))
                    .count();
                let name = if count == 0 {
                    value.to_string()
                } else {
                    format!("{value}{}", count + 1)
                };
                self.channel_values.push((call_text.clone(), name.clone()));
                name
            }
        };
        self.taken.insert(name.clone());
        self.note(
            pos,
            Note::ChannelValue {
                call: call_text,
                value: name.clone(),
            },
        );
        let message = format!(
            "set `{name}` in your values: kOps computed it with {function} from its channel, and kopsci renders offline"
        );
        Expr::new(
            format!("{name} | required({})", jinja_string(&message)),
            FILTER,
        )
    }
}

/// The value name a kOps channel function needs, or `None` for other
/// functions.
pub(crate) fn channel_value_name(function: &str) -> Option<&'static str> {
    Some(match function {
        "ChannelRecommendedKopsKubernetesVersion" => "channelRecommendedKopsKubernetesVersion",
        "ChannelRecommendedKubernetesUpgradeVersion" => {
            "channelRecommendedKubernetesUpgradeVersion"
        }
        "ChannelRecommendedImage" => "channelRecommendedImage",
        _ => return None,
    })
}

/// A readable name for the variable of a `with`: its last field.
fn with_name(pipe: &Pipe) -> String {
    if let [cmd] = pipe.cmds.as_slice()
        && let [arg] = cmd.args.as_slice()
    {
        match arg {
            Arg::Field { path, .. } | Arg::Variable { path, .. } | Arg::Chain { path, .. } => {
                if let Some(last) = path.last() {
                    return last.clone();
                }
            }
            _ => {}
        }
    }
    "value".to_string()
}

/// Collects every field name the file reads, so that no Jinja variable
/// shadows one.
fn collect_fields(nodes: &[Node], out: &mut HashSet<String>) {
    fn pipe(p: &Pipe, out: &mut HashSet<String>) {
        for cmd in &p.cmds {
            // `hasKey $ "x"` and `index . "x"` name fields of the data too.
            let keyed = matches!(
                cmd.args.first(),
                Some(Arg::Ident { name, .. }) if matches!(name.as_str(), "hasKey" | "index" | "get")
            ) && match cmd.args.get(1) {
                Some(Arg::Dot { .. }) => true,
                Some(Arg::Variable { var, path, .. }) => var.0 == 0 && path.is_empty(),
                _ => false,
            };
            for arg in &cmd.args {
                if keyed
                    && let Arg::String { value, .. } = arg
                    && is_identifier(value)
                {
                    out.insert(value.clone());
                }
                walk_arg(arg, out);
            }
        }
    }
    fn walk_arg(arg: &Arg, out: &mut HashSet<String>) {
        match arg {
            // Only a path's first field can be a bare Jinja name; the rest
            // are attributes.
            Arg::Field { path, .. } => out.extend(path.first().cloned()),
            Arg::Variable { var, path, .. } if var.0 == 0 => out.extend(path.first().cloned()),
            Arg::Chain { base, .. } => walk_arg(base, out),
            Arg::Pipe(p) => pipe(p, out),
            _ => {}
        }
    }
    fn control(c: &Control, out: &mut HashSet<String>) {
        pipe(&c.pipe, out);
        collect_fields(&c.body, out);
        match &c.otherwise {
            Some(Else::Plain { body, .. }) => collect_fields(body, out),
            Some(Else::Chain { control: chained }) => control(chained, out),
            None => {}
        }
    }
    for node in nodes {
        match node {
            Node::Action { pipe: p, .. } => pipe(p, out),
            Node::If(c) | Node::With(c) | Node::Range(c) => control(c, out),
            Node::Template { pipe: Some(p), .. } => pipe(p, out),
            _ => {}
        }
    }
}

/// Go's trimming: only space, tab, CR and LF.
fn go_trim_start(s: &str) -> &str {
    s.trim_start_matches(super::lex::is_space)
}

fn go_trim_end(s: &str) -> &str {
    s.trim_end_matches(super::lex::is_space)
}

/// Settles whitespace trimming and writes the Jinja source.
fn finish(mut pieces: Vec<Piece>) -> String {
    for i in 0..pieces.len() {
        let Piece::Text(raw) = &pieces[i] else {
            continue;
        };
        let trim_start = i > 0
            && matches!(
                pieces[i - 1],
                Piece::Tag {
                    trim_right: true,
                    ..
                }
            );
        let trim_end = matches!(
            pieces.get(i + 1),
            Some(Piece::Tag {
                trim_left: true,
                ..
            })
        );
        if !trim_start && !trim_end {
            continue;
        }
        let mut go = raw.as_str();
        let mut jinja = raw.as_str();
        if trim_start {
            go = go_trim_start(go);
            jinja = jinja.trim_start();
        }
        if trim_end {
            go = go_trim_end(go);
            jinja = jinja.trim_end();
        }
        if go == jinja {
            continue;
        }
        // Jinja would trim other Unicode spaces too: trim here instead.
        let go = go.to_string();
        pieces[i] = Piece::Text(go);
        if trim_start && let Piece::Tag { trim_right, .. } = &mut pieces[i - 1] {
            *trim_right = false;
        }
        if trim_end && let Some(Piece::Tag { trim_left, .. }) = pieces.get_mut(i + 1) {
            *trim_left = false;
        }
    }
    let mut out = String::new();
    let count = pieces.len();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Text(text) => {
                let next_is_tag = i + 1 < count;
                out.push_str(&escape_text(text, next_is_tag));
            }
            Piece::Tag {
                open,
                body,
                close,
                trim_left,
                trim_right,
                verbatim,
            } => {
                let pad = if *verbatim { "" } else { " " };
                out.push_str(open);
                out.push_str(if *trim_left { "-" } else { "" });
                out.push_str(pad);
                out.push_str(body);
                out.push_str(pad);
                out.push_str(if *trim_right { "-" } else { "" });
                out.push_str(close);
            }
        }
    }
    out
}

/// Text that Jinja must not read as a tag: `{%`, `{#` and `{{` are written
/// as expressions, and so is a `{` right before one of our tags.
fn escape_text(text: &str, next_is_tag: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '{' {
            match chars.peek() {
                Some((_, n @ ('%' | '#' | '{'))) => {
                    out.push_str(&format!("{{{{ \"{{{n}\" }}}}"));
                    chars.next();
                    continue;
                }
                None if next_is_tag => {
                    out.push_str("{{ \"{\" }}");
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// The Jinja keywords, minijinja's globals and the converter's own names,
/// for tests that check generated names.
#[cfg(test)]
pub(crate) fn reserved_names() -> std::collections::BTreeSet<&'static str> {
    RESERVED.iter().copied().collect()
}
