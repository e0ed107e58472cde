//! One case per construct: Go source → the Jinja the converter writes →
//! what kopsci renders it to (which is what kOps renders the Go source to),
//! plus the unsupported constructs and a property test that every
//! conversion parses as Jinja.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::render::{RenderOptions, TemplateSet};

/// An environment set up as kopsci's renderer sets it up, without
/// `include` and without the check that every document is YAML (so that
/// cases can print anything).
fn environment(strict: bool) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_debug(false);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .unwrap(),
    );
    env.set_undefined_behavior(if strict {
        minijinja::UndefinedBehavior::Strict
    } else {
        minijinja::UndefinedBehavior::Lenient
    });
    crate::render::functions::register(&mut env);
    crate::render::sprig::register(&mut env);
    env
}

/// Renders Jinja the way `kopsci render` does; with `snippets` (name →
/// Jinja) through a real template set, so that `include` works.
fn render_jinja(
    jinja: &str,
    values: serde_json::Value,
    snippets: &[(&str, &str)],
    strict: bool,
) -> crate::Result<String> {
    if snippets.is_empty() {
        let ctx = crate::render::functions::to_value(&values);
        return environment(strict)
            .render_str(jinja, ctx)
            .map_err(|e| crate::Error::Template {
                location: "t".into(),
                message: format!("{e:#}"),
            });
    }
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t");
    std::fs::write(&template, jinja).unwrap();
    let snippet_dir = dir.path().join("snippets");
    std::fs::create_dir(&snippet_dir).unwrap();
    for (name, text) in snippets {
        std::fs::write(snippet_dir.join(name), text).unwrap();
    }
    let set = TemplateSet::load(&[template], &[snippet_dir])?;
    let values = match values {
        serde_json::Value::Object(map) => map,
        _ => panic!("values must be a map"),
    };
    set.render(
        &values,
        &RenderOptions {
            fail_on_missing: strict,
            format_yaml: false,
        },
    )
}

fn convert(go: &str, opts: &Options) -> Converted {
    convert_source(go, "t", Role::Template, opts).unwrap_or_else(|e| panic!("{go}: {e}"))
}

/// Go → Jinja → output, with kOps' defaults.
#[track_caller]
fn check(go: &str, jinja: &str, values: serde_json::Value, output: &str) {
    check_with(go, jinja, values, output, &Options::default(), &[]);
}

#[track_caller]
fn check_with(
    go: &str,
    jinja: &str,
    values: serde_json::Value,
    output: &str,
    opts: &Options,
    snippets: &[(&str, &str)],
) {
    let converted = convert(go, opts);
    assert_eq!(converted.jinja, jinja, "conversion of {go:?}");
    let snippets: Vec<(String, String)> = snippets
        .iter()
        .map(|(name, go)| {
            let c = convert_source(go, name, Role::Snippet, opts).unwrap();
            (name.to_string(), c.jinja)
        })
        .collect();
    let snippet_refs: Vec<(&str, &str)> = snippets
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let rendered = render_jinja(jinja, values, &snippet_refs, opts.fail_on_missing)
        .unwrap_or_else(|e| panic!("render of {jinja:?}: {e}"));
    assert_eq!(rendered, output, "render of {jinja:?}");
}

/// `case!(name: go => jinja, values => output)`: one test per construct.
macro_rules! case {
    ($name:ident: $go:expr => $jinja:expr, $values:tt => $out:expr) => {
        #[test]
        fn $name() {
            check($go, $jinja, serde_json::json!($values), $out);
        }
    };
}

// -- fields, dot and variables ----------------------------------------------

case!(field: "a: {{ .a }}\n" => "a: {{ a }}\n", {"a": "x"} => "a: x\n");
case!(nested_field: "a: {{ .a.b.c }}\n" => "a: {{ a.b.c }}\n", {"a": {"b": {"c": 1}}} => "a: 1\n");
case!(root_variable_field: "a: {{ $.a }}\n" => "a: {{ a }}\n", {"a": true} => "a: true\n");
case!(whole_dot:
    "a: {{ toJson . }}\n"
    => "{% set _root = go_root() %}a: {{ _root | sprig_tojson }}\n",
    {"b": 1, "a": "x"} => "a: {\"a\":\"x\",\"b\":1}\n");
case!(field_of_a_keyword_name:
    "a: {{ .loop }} {{ .x.if }}\n"
    => "{% set _root = go_root() %}a: {{ _root[\"loop\"] }} {{ x[\"if\"] }}\n",
    {"loop": 1, "x": {"if": 2}} => "a: 1 2\n");
case!(declare_and_use:
    "{{ $x := .a }}a: {{ $x }}\n"
    => "{% set x = a %}a: {{ x }}\n",
    {"a": 5} => "a: 5\n");
case!(variable_named_like_a_field:
    "{{ $a := \"v\" }}a: {{ $a }} {{ .a }}\n"
    => "{% set a_2 = \"v\" %}a: {{ a_2 }} {{ a }}\n",
    {"a": "f"} => "a: v f\n");
case!(shadowing_inside_if:
    "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}\n"
    => "{% set x = 1 %}{% if true %}{% set x_2 = 2 %}{{ x_2 }}{% endif %}{{ x }}\n",
    {} => "21\n");
case!(assignment_inside_range:
    "{{ $n := 0 }}{{ range .l }}{{ $n = add $n . }}{{ end }}n: {{ $n }}\n"
    => "{% set n = namespace(value=0) %}{% for item in l | go_range %}{% set n.value = sprig_add(n.value, item) %}{% endfor %}n: {{ n.value }}\n",
    {"l": [1, 2, 3]} => "n: 6\n");
case!(assignment_inside_if:
    "{{ $x := \"a\" }}{{ if .c }}{{ $x = \"b\" }}{{ end }}x: {{ $x }}\n"
    => "{% set x = \"a\" %}{% if c %}{% set x = \"b\" %}{% endif %}x: {{ x }}\n",
    {"c": true} => "x: b\n");

// -- range --------------------------------------------------------------------

case!(range_list_dot_and_root:
    "{{ range .l }}{{ . }}-{{ $.s }} {{ end }}\n"
    => "{% for item in l | go_range %}{{ item }}-{{ s }} {% endfor %}\n",
    {"l": ["x", "y"], "s": "S"} => "x-S y-S \n");
case!(range_index_and_element:
    "{{ range $i, $e := .l }}{{ $i }}:{{ $e }} {{ end }}\n"
    => "{% for i, e in l | go_items %}{{ i }}:{{ e }} {% endfor %}\n",
    {"l": ["x", "y"]} => "0:x 1:y \n");
case!(range_map_sorted:
    "{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}\n"
    => "{% for k, v in m | go_items %}{{ k }}={{ v }};{% endfor %}\n",
    {"m": {"b": 1, "a": 2, "C": 3}} => "C=3;a=2;b=1;\n");
case!(range_map_one_variable:
    "{{ range $v := .m }}{{ $v }}{{ end }}\n"
    => "{% for v in m | go_range %}{{ v }}{% endfor %}\n",
    {"m": {"b": 1, "a": 2}} => "21\n");
case!(range_else:
    "{{ range .l }}x{{ else }}none{{ end }}\n"
    => "{% for item in l | go_range %}x{% else %}none{% endfor %}\n",
    {"l": []} => "none\n");
case!(range_over_null_is_empty:
    "{{ range .l }}x{{ else }}none{{ end }}\n"
    => "{% for item in l | go_range %}x{% else %}none{% endfor %}\n",
    {"l": null} => "none\n");
case!(range_break_continue:
    "{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}\n"
    => "{% for item in l | go_range %}{% if item == 2 %}{% continue %}{% endif %}{% if item == 4 %}{% break %}{% endif %}{{ item }}{% endfor %}\n",
    {"l": [1, 2, 3, 4, 5]} => "13\n");
case!(nested_ranges_keep_their_dots:
    "{{ range .a }}{{ range .b }}{{ . }}{{ end }};{{ end }}\n"
    => "{% for item in a | go_range %}{% for item_2 in item.b | go_range %}{{ item_2 }}{% endfor %};{% endfor %}\n",
    {"a": [{"b": [1, 2]}, {"b": [3]}]} => "12;3;\n");

#[test]
fn range_map_in_values_order() {
    let opts = Options {
        map_order: MapOrder::Values,
        ..Options::default()
    };
    check_with(
        "{{ range $k, $v := .m }}{{ $k }} {{ end }}\n",
        "{% for k, v in m | go_items(sorted=false) %}{{ k }} {% endfor %}\n",
        serde_json::json!({"m": {"b": 1, "a": 2}}),
        "b a \n",
        &opts,
        &[],
    );
}

// -- if, with -------------------------------------------------------------------

case!(if_else_if_else:
    "{{ if eq .a \"x\" }}X{{ else if eq .a \"y\" }}Y{{ else }}Z{{ end }}\n"
    => "{% if a == \"x\" %}X{% elif a == \"y\" %}Y{% else %}Z{% endif %}\n",
    {"a": "y"} => "Y\n");
case!(if_go_truth:
    "{{ if .e }}T{{ else }}F{{ end }}{{ if .z }}T{{ else }}F{{ end }}{{ if .m }}T{{ else }}F{{ end }}{{ if .s }}T{{ else }}F{{ end }}{{ if .n }}T{{ else }}F{{ end }}\n"
    => "{% if e %}T{% else %}F{% endif %}{% if z %}T{% else %}F{% endif %}{% if m %}T{% else %}F{% endif %}{% if s %}T{% else %}F{% endif %}{% if n %}T{% else %}F{% endif %}\n",
    {"e": [], "z": 0, "m": {}, "s": "0", "n": null} => "FFFTF\n");
case!(if_with_declaration:
    "{{ if $x := .a }}{{ $x }}{{ end }}\n"
    => "{% set x = a %}{% if x %}{{ x }}{% endif %}\n",
    {"a": "v"} => "v\n");
case!(else_if_with_declaration:
    "{{ if .a }}A{{ else if $x := .b }}{{ $x }}{{ else }}none{{ end }}\n"
    => "{% if a %}A{% else %}{% set x = b %}{% if x %}{{ x }}{% else %}none{% endif %}{% endif %}\n",
    {"a": false, "b": "B"} => "B\n");
case!(with_else:
    "{{ with .a }}{{ .b }}{{ else }}none{{ end }}|{{ with .c }}{{ . }}{{ else }}none{{ end }}\n"
    => "{% set a_2 = a %}{% if a_2 %}{{ a_2.b }}{% else %}none{% endif %}|{% set c_2 = c %}{% if c_2 %}{{ c_2 }}{% else %}none{% endif %}\n",
    {"a": {"b": 1}, "c": ""} => "1|none\n");
case!(else_with_chain:
    "{{ with .a }}a{{ else with .b }}{{ . }}{{ else }}none{{ end }}\n"
    => "{% set a_2 = a %}{% if a_2 %}a{% else %}{% set b_2 = b %}{% if b_2 %}{{ b_2 }}{% else %}none{% endif %}{% endif %}\n",
    {"a": null, "b": "B"} => "B\n");
case!(with_declares_a_variable:
    "{{ with $v := .a }}{{ $v }}{{ . }}{{ end }}\n"
    => "{% set v = a %}{% if v %}{{ v }}{{ v }}{% endif %}\n",
    {"a": 7} => "77\n");

// -- operators ------------------------------------------------------------------

case!(and_or_return_operands:
    "{{ or .a \"d\" }} {{ and .b .c }} {{ or .a .b .c }}\n"
    => "{{ a or \"d\" }} {{ b and c }} {{ a or b or c }}\n",
    {"a": "", "b": 1, "c": 0} => "d 0 1\n");
case!(not_and_comparisons:
    "{{ not .a }} {{ ne .n 1 }} {{ lt .n 2 }} {{ le .n 1 }} {{ gt .s \"a\" }} {{ ge .n 2 }}\n"
    => "{{ not a }} {{ n != 1 }} {{ n < 2 }} {{ n <= 1 }} {{ s > \"a\" }} {{ n >= 2 }}\n",
    {"a": [], "n": 1, "s": "b"} => "true false true true true false\n");
case!(eq_with_several_values:
    "{{ if eq .r \"a\" \"b\" \"c\" }}yes{{ end }}\n"
    => "{% if r in [\"a\", \"b\", \"c\"] %}yes{% endif %}\n",
    {"r": "c"} => "yes\n");
case!(nested_operators_are_parenthesized:
    "{{ if and (or .a .b) (not (eq .c 1)) }}yes{{ end }}\n"
    => "{% if (a or b) and not c == 1 %}yes{% endif %}\n",
    {"a": false, "b": true, "c": 2} => "yes\n");

// -- built-in functions -----------------------------------------------------------

case!(index_missing_key_is_not_an_error:
    "{{ if index .m \"k\" }}yes{{ else }}no{{ end }} {{ index .m \"a\" \"b\" }} {{ index .l 1 }}\n"
    => "{% if go_index(m, \"k\") %}yes{% else %}no{% endif %} {{ go_index(m, \"a\", \"b\") }} {{ go_index(l, 1) }}\n",
    {"m": {"a": {"b": "x"}}, "l": [1, 2]} => "no x 2\n");
case!(len_counts_bytes:
    "{{ len .s }} {{ len .l }} {{ len .m }}\n"
    => "{{ s | go_len }} {{ l | go_len }} {{ m | go_len }}\n",
    {"s": "é", "l": [1, 2], "m": {}} => "2 2 0\n");
case!(printf_verbs:
    "{{ printf \"%s-%d-%v-%q-%t-%.1f\" .s .n .l .s .b .f }}\n"
    => "{{ go_printf(\"%s-%d-%v-%q-%t-%.1f\", s, n, l, s, b, f) }}\n",
    {"s": "a", "n": 3, "l": ["x", 1], "b": true, "f": 2.25} => "a-3-[x 1]-\"a\"-true-2.2\n");
case!(print_and_println:
    "{{ print .a 1 2 \"b\" }}|{{ println .a 1 }}"
    => "{{ go_print(a, 1, 2, \"b\") }}|{{ go_println(a, 1) }}",
    {"a": "x"} => "x1 2b|x 1\n");

// -- pipelines ----------------------------------------------------------------------

case!(pipeline_appends_the_last_argument:
    "{{ .a | upper | quote }} {{ .b | default \"d\" }} {{ \"x\" | printf \"%s-%s\" .a }}\n"
    => "{{ a | sprig_upper | sprig_quote }} {{ b | sprig_default(\"d\") }} {{ go_printf(\"%s-%s\", a, \"x\") }}\n",
    {"a": "v", "b": ""} => "\"V\" d v-x\n");
case!(parenthesized_pipeline_with_fields:
    "{{ (index .l 0).name }}\n"
    => "{{ go_index(l, 0).name }}\n",
    {"l": [{"name": "n"}]} => "n\n");

// -- whitespace and comments --------------------------------------------------------

case!(trim_markers:
    "a  {{- .x -}}  b\nc\n  {{- .y }}\nd {{ .x -}}\n\n  e\n"
    => "a  {{- x -}}  b\nc\n  {{- y }}\nd {{ x -}}\n\n  e\n",
    {"x": 1, "y": 2} => "a1b\nc2\nd 1e\n");
case!(trim_keeps_unicode_spaces_go_keeps:
    "a\u{a0} {{- .x }}\n"
    => "a\u{a0}{{ x }}\n",
    {"x": 1} => "a\u{a0}1\n");
case!(trim_around_control_structures:
    "l:\n{{- range .l }}\n- {{ . }}\n{{- end }}\n"
    => "l:\n{%- for item in l | go_range %}\n- {{ item }}\n{%- endfor %}\n",
    {"l": [1, 2]} => "l:\n- 1\n- 2\n");
case!(comments:
    "a{{/* one */}}b {{- /* two #} */ -}} c\n"
    => "a{# one #}b {#- two # } -#} c\n",
    {} => "abc\n");
case!(jinja_syntax_in_text_is_escaped:
    "{% raw %} {# c #} {{ \"{{\" }}{{ .a }}}\n"
    => "{{ \"{%\" }} raw %} {{ \"{#\" }} c #} {{ \"{{\" }}{{ a }}}\n",
    {"a": 1} => "{% raw %} {# c #} {{1}\n");

// -- Sprig and kOps functions ---------------------------------------------------------

case!(default_replaces_empty_values:
    "{{ default \"d\" .a }} {{ default \"d\" .b }} {{ default 5 .c }} {{ default \"d\" .e }}\n"
    => "{{ a | sprig_default(\"d\") }} {{ b | sprig_default(\"d\") }} {{ c | sprig_default(5) }} {{ e | sprig_default(\"d\") }}\n",
    {"a": "", "b": "v", "c": 0, "e": null} => "d v 5 d\n");
case!(quote_and_squote:
    "{{ quote .a }} {{ .n | quote }} {{ squote .a }} {{ quote .a .n }}\n"
    => "{{ a | sprig_quote }} {{ n | sprig_quote }} {{ a | sprig_squote }} {{ sprig_quote(a, n) }}\n",
    {"a": "x\"y", "n": 2} => "\"x\\\"y\" \"2\" 'x\"y' \"x\\\"y\" \"2\"\n");
case!(kops_indent_keeps_the_trailing_newline:
    "a:\n  {{ indent 2 .t }}b: 1\n"
    => "a:\n  {{ t | kops_indent(2) }}b: 1\n",
    {"t": "x: 1\n\ny: 2\n"} => "a:\n  x: 1\n\n  y: 2\nb: 1\n");
case!(sprig_nindent_pads_every_line:
    "a:{{ .t | nindent 2 }}\n"
    => "a:{{ t | sprig_nindent(2) }}\n",
    {"t": "x: 1\n\ny: 2"} => "a:\n  x: 1\n  \n  y: 2\n");
case!(tojson_like_go:
    "spec:\n  kubernetesApiAccess: {{ .allowedIPs | toJson }}\n"
    => "spec:\n  kubernetesApiAccess: {{ allowedIPs | sprig_tojson }}\n",
    {"allowedIPs": ["1.2.3.4/32", "4.3.2.1/32"]} => "spec:\n  kubernetesApiAccess: [\"1.2.3.4/32\",\"4.3.2.1/32\"]\n");
case!(base64:
    "{{ b64enc .s }} {{ .e | b64dec }}\n"
    => "{{ s | sprig_b64enc }} {{ e | sprig_b64dec }}\n",
    {"s": "hi", "e": "aGk="} => "aGk= hi\n");
case!(string_functions:
    "{{ upper .s }} {{ lower .s }} {{ trim .p }} {{ replace \"-\" \"_\" .s }} {{ trimPrefix \"a\" .s }} {{ hasSuffix \"C\" .s }}\n"
    => "{{ s | sprig_upper }} {{ s | sprig_lower }} {{ p | trim }} {{ s | replace(\"-\", \"_\") }} {{ s | sprig_trim_prefix(\"a\") }} {{ s is endingwith(\"C\") }}\n",
    {"s": "a-B-C", "p": "  x \n"} => "A-B-C a-b-c x a_B_C -B-C true\n");
case!(join_split_list:
    "{{ join \",\" .l }} {{ (split \".\" .ip)._1 }} {{ index (splitList \".\" .ip) 2 }} {{ list 1 \"a\" | toJson }}\n"
    => "{{ l | sprig_join(\",\") }} {{ (ip | sprig_split(\".\"))._1 }} {{ go_index(ip | sprig_split_list(\".\"), 2) }} {{ [1, \"a\"] | sprig_tojson }}\n",
    {"l": ["a", 1, null], "ip": "10.2.3.4"} => "a,1 2 3 [1,\"a\"]\n");
case!(dict_haskey_empty_ternary:
    "{{ $d := dict \"a\" 1 \"b\" .x }}{{ hasKey $d \"b\" }} {{ empty .e }} {{ ternary \"y\" \"n\" .t }} {{ $d | toJson }}\n"
    => "{% set d = {\"a\": 1, \"b\": x} %}{{ \"b\" in d }} {{ not e }} {{ \"y\" if t else \"n\" }} {{ d | sprig_tojson }}\n",
    {"x": 2, "e": "", "t": false} => "true true n {\"a\":1,\"b\":2}\n");
case!(haskey_on_the_root_is_defined:
    "{{ if hasKey $ \"subnets\" }}yes{{ else }}no{{ end }} {{ .subnets }}\n"
    => "{% if subnets is defined %}yes{% else %}no{% endif %} {{ subnets }}\n",
    {"subnets": null} => "yes \n");
case!(semver_compare:
    "{{ if semverCompare \">=1.30\" .v }}new{{ else }}old{{ end }}\n"
    => "{% if semver_compare(v, \">=1.30\") %}new{% else %}old{% endif %}\n",
    {"v": "v1.34.1"} => "new\n");
case!(math_like_sprig:
    "{{ add 1 2 3 }} {{ sub .n 1 }} {{ mul 2 .f }} {{ div 7 2 }} {{ mod 7 2 }} {{ add1 .n }} {{ until 3 | toJson }}\n"
    => "{{ sprig_add(1, 2, 3) }} {{ sprig_sub(n, 1) }} {{ sprig_mul(2, f) }} {{ sprig_div(7, 2) }} {{ sprig_mod(7, 2) }} {{ sprig_add1(n) }} {{ sprig_until(3) | sprig_tojson }}\n",
    {"n": 5, "f": 2.9} => "6 4 4 3 1 6 [0,1,2]\n");
case!(list_functions:
    "{{ $l := list 1 }}{{ $l = append $l 2 }}{{ has 2 $l }} {{ first $l }} {{ last $l }} {{ prepend $l 0 | toJson }} {{ concat $l (list 3) | toJson }}\n"
    => "{% set l = [1] %}{% set l = l + [2] %}{{ l | sprig_has(2) }} {{ l | sprig_first }} {{ l | sprig_last }} {{ ([0] + l) | sprig_tojson }} {{ (l + [3]) | sprig_tojson }}\n",
    {} => "true 1 2 [0,1,2] [1,2,3]\n");
case!(kinds_and_types:
    "{{ kindOf .m }} {{ kindIs \"slice\" .l }} {{ typeOf .s }} {{ kindOf .n }}\n"
    => "{{ m | sprig_kind_of }} {{ l | sprig_kind_is(\"slice\") }} {{ s | sprig_type_of }} {{ n | sprig_kind_of }}\n",
    {"m": {}, "l": [], "s": "", "n": null} => "map true string invalid\n");

#[test]
fn set_changes_maps_in_place() {
    let opts = Options {
        mutable_dicts: true,
        ..Options::default()
    };
    check_with(
        "{{ $d := dict \"a\" 1 }}{{ $alias := $d }}{{ range $k, $v := .m }}{{ $_ := set $d $k $v }}{{ end }}{{ toJson $alias }}\n",
        "{% set d = sprig_dict(\"a\", 1) %}{% set alias = d %}{% for k, v in m | go_items %}{% set _ = sprig_set(d, k, v) %}{% endfor %}{{ alias | sprig_tojson }}\n",
        serde_json::json!({"m": {"b": 2, "a": 0}}),
        "{\"a\":0,\"b\":2}\n",
        &opts,
        &[],
    );
}

#[test]
fn include_and_template() {
    let snippets = [
        ("docker", "bridge: {{ .bridge }}\nip: {{ .ip }}\n"),
        ("unit", "u1-{{ .n }}"),
    ];
    check_with(
        "spec:\n  docker:\n    {{ include \"docker\" . | indent 4 }}  unit: {{ include \"unit\" (dict \"n\" 1) }}\n  tpl: {{ template \"unit\" .sub }}\n",
        "spec:\n  docker:\n    {{ include(\"docker\") | kops_indent(4) }}  unit: {{ include(\"unit\", {\"n\": 1}) }}\n  tpl: {{ include(\"unit\", sub) }}\n",
        serde_json::json!({"bridge": "", "ip": "1.2.3.4", "sub": {"n": 2}}),
        "spec:\n  docker:\n    bridge: \n    ip: 1.2.3.4\n  unit: u1-1\n  tpl: u1-2\n",
        &Options::default(),
        &snippets,
    );
}

#[test]
fn snippets_pass_their_own_root_on() {
    // In a snippet, `.` is the snippet's context, not the values.
    let converted = convert_source(
        "{{ include \"inner\" . }}",
        "outer",
        Role::Snippet,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        converted.jinja,
        "{% set _root = go_root() %}{{ include(\"inner\", _root) }}"
    );
    let out = render_jinja(
        "{{ include(\"outer\", {\"v\": \"ctx\"}) }}\n",
        serde_json::json!({"v": "root"}),
        &[("outer", &converted.jinja), ("inner", "{{ v }}")],
        true,
    )
    .unwrap();
    assert_eq!(out, "ctx\n");
}

#[test]
fn helm_functions_convert_with_a_note() {
    let c = convert(
        "a:\n  {{- toYaml .m | nindent 2 }}\nb: {{ required \"b is needed\" .b }}\n",
        &Options::default(),
    );
    assert_eq!(
        c.jinja,
        "a:\n  {{- m | toyaml | sprig_nindent(2) }}\nb: {{ b | required(\"b is needed\") }}\n"
    );
    let notes: Vec<String> = c.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("t:2:7: note: toYaml is Helm's"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("t:3:7: note: required is Helm's"),
        "{notes:?}"
    );
    let out = render_jinja(
        &c.jinja,
        serde_json::json!({"m": {"z": 1, "a": [1]}, "b": "x"}),
        &[],
        true,
    )
    .unwrap();
    assert_eq!(out, "a:\n  z: 1\n  a:\n  - 1\nb: x\n");
}

#[test]
fn channel_functions_need_a_value() {
    let c = convert(
        "image: {{ ChannelRecommendedImage .cloud .kubernetesVersion .architecture }}\nv: {{ ChannelRecommendedKubernetesUpgradeVersion .kubernetesVersion }}\n",
        &Options::default(),
    );
    assert!(c.jinja.starts_with("image: {{ channelRecommendedImage | required(\"set `channelRecommendedImage` in your values"), "{}", c.jinja);
    let notes: Vec<String> = c.notes.iter().map(ToString::to_string).collect();
    assert_eq!(
        notes[0],
        "t:1:11: note: `ChannelRecommendedImage .cloud .kubernetesVersion .architecture` needs a value: kOps looks it up in its channel over the network and kopsci renders offline; set `channelRecommendedImage` in your values (the render fails until you do)"
    );
    let values =
        serde_json::json!({"cloud": "aws", "kubernetesVersion": "1.34.0", "architecture": "amd64"});
    let err = render_jinja(&c.jinja, values.clone(), &[], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("set `channelRecommendedImage` in your values"),
        "{err}"
    );
    let mut values = values;
    values["channelRecommendedImage"] = "img".into();
    values["channelRecommendedKubernetesUpgradeVersion"] = "1.34.1".into();
    assert_eq!(
        render_jinja(&c.jinja, values, &[], true).unwrap(),
        "image: img\nv: 1.34.1\n"
    );
}

// -- missing keys ---------------------------------------------------------------------

#[test]
fn missing_keys_fail_like_missingkey_error() {
    for go in [
        "a: {{ .missing }}\n",
        "a: {{ default \"d\" .missing }}\n",
        "a: {{ if .missing }}x{{ end }}\n",
        "a: {{ range .missing }}x{{ end }}\n",
        "a: {{ with .missing }}x{{ end }}\n",
        "a: {{ .a.missing | quote }}\n",
        "a: {{ eq .missing \"x\" }}\n",
        "a: {{ printf \"%v\" .missing }}\n",
    ] {
        let c = convert(go, &Options::default());
        let err = render_jinja(&c.jinja, serde_json::json!({"a": {}}), &[], true).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{go}: {err}");
    }
}

#[test]
fn lenient_mode_reads_missing_keys_as_no_value() {
    let opts = Options {
        fail_on_missing: false,
        ..Options::default()
    };
    check_with(
        "a: {{ default \"d\" .x.y.z }} {{ if .x.y }}x{{ else }}none{{ end }}\n",
        "a: {{ x | go_path(\"y\", \"z\") | sprig_default(\"d\") }} {% if x | go_path(\"y\") %}x{% else %}none{% endif %}\n",
        serde_json::json!({}),
        "a: d none\n",
        &opts,
        &[],
    );
}

// -- what stops the conversion -----------------------------------------------------------

#[track_caller]
fn unsupported(go: &str, expected: &str) {
    let err = convert_source(go, "t.yaml", Role::Template, &Options::default())
        .expect_err(go)
        .to_string();
    assert!(err.starts_with(expected), "{go}: {err}");
}

#[test]
fn unsupported_constructs_name_file_line_and_column() {
    unsupported(
        "a\n{{ define \"x\" }}y{{ end }}",
        "t.yaml:2:4: unsupported: {{define}}",
    );
    unsupported(
        "{{ block \"x\" . }}y{{ end }}",
        "t.yaml:1:4: unsupported: {{block}}",
    );
    unsupported("a: {{ slice .l 1 }}", "t.yaml:1:7: unsupported: slice (");
    unsupported("a: {{ .a | html }}", "t.yaml:1:12: unsupported: html (");
    unsupported("a: {{ now }}", "t.yaml:1:7: unsupported: now (");
    unsupported("a: {{ env \"HOME\" }}", "t.yaml:1:7: unsupported: env (");
    unsupported("a: {{ merge .a .b }}", "t.yaml:1:7: unsupported: merge (");
    unsupported(
        "a: {{ regexFind \"x\" .a }}",
        "t.yaml:1:7: unsupported: the Sprig function regexFind (",
    );
    unsupported(
        "a: {{ nosuch .a }}",
        "t.yaml:1:7: function \"nosuch\" not defined",
    );
    unsupported("a: {{ $x }}", "t.yaml:1:7: undefined variable \"$x\"");
    unsupported("a: {{ .a \n", "t.yaml:1:4: unclosed action");
    unsupported("a: {{ if .a }}", "t.yaml:1:15: unexpected EOF");
    unsupported(
        "a: {{ indent 2 }}",
        "t.yaml:1:7: wrong number of args for indent: want 2 got 1",
    );
    unsupported(
        "a: {{ .a 1 }}",
        "t.yaml:1:7: can't give argument to non-function",
    );
    // Every problem of the file, one per line.
    let err = convert_source(
        "{{ now }}\n{{ slice .a }}\n",
        "t",
        Role::Template,
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.lines()
            .nth(1)
            .unwrap()
            .starts_with("t:2:4: unsupported: slice"),
        "{err}"
    );
}

#[test]
fn generated_names_avoid_reserved_words() {
    let c = convert(
        "{{ $loop := 1 }}{{ $range := 2 }}{{ $include := 3 }}{{ $loop }}{{ $range }}{{ $include }}",
        &Options::default(),
    );
    assert_eq!(
        c.jinja,
        "{% set loop_2 = 1 %}{% set range_2 = 2 %}{% set include_2 = 3 %}{{ loop_2 }}{{ range_2 }}{{ include_2 }}"
    );
    for name in convert::reserved_names() {
        let go = format!("{{{{ ${name} := 1 }}}}{{{{ ${name} }}}}");
        if let Ok(c) = convert_source(&go, "t", Role::Template, &Options::default()) {
            assert!(
                !c.jinja.contains(&format!("set {name} ")),
                "{go} → {}",
                c.jinja
            );
        }
    }
}

#[test]
fn plan_maps_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("t/sub")).unwrap();
    std::fs::write(root.join("t/a.yaml"), "a").unwrap();
    std::fs::write(root.join("t/sub/b.yaml"), "b").unwrap();
    std::fs::write(root.join("t/.hidden"), "h").unwrap();
    std::fs::write(root.join("one.yaml"), "1").unwrap();
    let (jobs, hidden) = plan(
        &[root.join("t"), root.join("one.yaml")],
        Path::new("/out"),
        Role::Any,
    )
    .unwrap();
    let outputs: Vec<PathBuf> = jobs.iter().map(|j| j.output.clone()).collect();
    assert_eq!(
        outputs,
        [
            PathBuf::from("/out/a.yaml"),
            PathBuf::from("/out/sub/b.yaml"),
            PathBuf::from("/out/one.yaml")
        ]
    );
    assert_eq!(hidden, [root.join("t/.hidden")]);
    let err = plan(
        &[root.join("t/a.yaml"), root.join("t/a.yaml")],
        Path::new("/out"),
        Role::Any,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("would both be converted"), "{err}");
}

// -- the property: every conversion is Jinja ---------------------------------------

/// Go template pieces from a grammar that covers the converter's input:
/// text with Jinja-looking characters and spaces of every kind, actions
/// with trim markers, pipelines, variables, control structures.
fn go_template() -> impl Strategy<Value = String> {
    let text = proptest::string::string_regex("[a-z {}%#\n\t\u{a0}\u{2003}:-]{0,12}")
        .unwrap()
        .prop_filter("no Go delimiters", |s| {
            !s.contains("{{") && !s.ends_with('{') && !s.starts_with('{')
        });
    let string = proptest::string::string_regex("[a-z\"\\\\{}%# \n]{0,6}")
        .unwrap()
        .prop_map(|s| format!("{s:?}"));
    let operand = prop_oneof![
        Just(".a".to_string()),
        Just(".a.b".to_string()),
        Just("$".to_string()),
        Just("$.a".to_string()),
        Just(".".to_string()),
        Just("$v".to_string()),
        Just("1".to_string()),
        Just("-2.5".to_string()),
        Just("true".to_string()),
        Just("nil".to_string()),
        string,
    ];
    let command = (
        prop_oneof![
            Just(""),
            Just("quote "),
            Just("default \"d\" "),
            Just("upper "),
            Just("toJson "),
            Just("len "),
            Just("not "),
            Just("eq 1 "),
            Just("and .a "),
            Just("or 0 "),
            Just("index . "),
            Just("printf \"%v\" "),
            Just("list 1 "),
            Just("dict \"k\" "),
            Just("hasKey . "),
            Just("ternary 1 2 "),
            Just("indent 2 "),
            Just("nindent 2 "),
            Just("b64enc "),
        ],
        operand.clone(),
    )
        .prop_map(|(f, o)| format!("{f}{o}"));
    let pipeline = (
        command.clone(),
        proptest::option::of(prop_oneof![
            Just("quote"),
            Just("upper"),
            Just("toJson"),
            Just("default \"x\""),
        ]),
    )
        .prop_map(|(c, p)| match p {
            Some(p) => format!("{c} | {p}"),
            None => c,
        });
    let open = prop_oneof![Just("{{ "), Just("{{- ")];
    let close = prop_oneof![Just(" }}"), Just(" -}}")];
    let action =
        (open.clone(), pipeline.clone(), close.clone()).prop_map(|(o, p, c)| format!("{o}{p}{c}"));
    let comment = (
        prop_oneof![Just("{{"), Just("{{- ")],
        "[a-z#} ]{0,6}",
        prop_oneof![Just("}}"), Just(" -}}")],
    )
        .prop_map(|(o, t, c)| format!("{o}/*{t}*/{c}"));
    let leaf = prop_oneof![text, action, comment];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        let body = proptest::collection::vec(inner, 0..4).prop_map(|v| v.concat());
        let keyword = prop_oneof![Just("if"), Just("with"), Just("range")];
        (
            keyword,
            pipeline.clone(),
            body.clone(),
            proptest::option::of((body.clone(), proptest::option::of(pipeline.clone()))),
            body,
        )
            .prop_map(|(kw, p, b, e, after)| {
                let decl = if kw == "range" { "$i, $e := " } else { "" };
                let use_loop = if kw == "range" { "{{ $e }}{{ break }}" } else { "" };
                // `else`, or a chained `else if`/`else with` (then a plain
                // `else` after it).
                let otherwise = match e {
                    None => String::new(),
                    Some((e, Some(chained))) if kw != "range" => {
                        format!("{{{{- else {kw} {chained} }}}}{e}{{{{ else }}}}x")
                    }
                    Some((e, _)) => format!("{{{{ else }}}}{e}"),
                };
                format!(
                    "{{{{ $v := 1 }}}}{{{{ {kw} {decl}{p} }}}}{b}{use_loop}{{{{ $v = 2 }}}}{otherwise}{{{{- end }}}}{after}"
                )
            })
    })
    .prop_map(|body| format!("{{{{ $v := 0 }}}}{body}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conversions_always_parse_as_jinja(go in go_template()) {
        let opts_list = [
            Options::default(),
            Options { map_order: MapOrder::Values, fail_on_missing: false, mutable_dicts: true },
        ];
        for opts in opts_list {
            let converted = convert_source(&go, "t", Role::Any, &opts);
            let converted = match converted {
                Ok(c) => c,
                Err(e) => panic!("the grammar only produces convertible templates: {go:?}: {e}"),
            };
            let mut env = environment(true);
            env.add_function("include", |_: String, _: Option<minijinja::Value>| String::new());
            if let Err(e) = env.template_from_str(&converted.jinja) {
                panic!("{go:?} → {:?} does not parse: {e}", converted.jinja);
            }
        }
    }
}
