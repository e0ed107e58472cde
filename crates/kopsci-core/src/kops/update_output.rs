//! Parsing `kops update cluster` dry-run output into an [`UpdatePlan`].
//!
//! kOps prints (DESIGN.md, "kOps output formats kopsci parses"):
//!
//! ```text
//! Will create resources:
//!   Type/name
//!   \t<Field padded to 20>\t<value>
//!   \t<Field padded to 20>                 (a multi-line value follows:)
//!   \t<20 spaces>\t<line of the value>
//!
//! Will modify resources:
//! Items will be deleted only when the --prune flag is specified:
//! Items will be deleted during update:
//!   <Type padded to 20> <item>              (kOps' deletion lines; `Type/name` too)
//!
//! Must specify --yes to apply changes       (or: No changes need to be applied)
//! ```
//!
//! among klog lines (`I1121 12:00:00.000000 1234 executor.go:111] …`) and
//! `*****` banner blocks (new-version notices), which are skipped wherever
//! they appear. The parser never fails and never panics: anything it does
//! not understand is skipped with a warning in [`UpdatePlan::warnings`], so
//! a new kOps release degrades the report instead of breaking the job.

use serde::{Deserialize, Serialize};

use crate::kops::klog::is_klog_line;

pub const CREATE_HEADER: &str = "Will create resources:";
pub const MODIFY_HEADER: &str = "Will modify resources:";
pub const PRUNE_HEADER: &str = "Items will be deleted only when the --prune flag is specified:";
pub const DELETE_HEADER: &str = "Items will be deleted during update:";
/// What kOps releases before the split into the two deletion sections printed.
pub const LEGACY_DELETE_HEADER: &str = "Will delete items:";
pub const MUST_APPLY: &str = "Must specify --yes to apply changes";
pub const NO_CHANGES: &str = "No changes need to be applied";

/// The cloud-level plan of a `kops update cluster` dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePlan {
    pub create: Vec<Resource>,
    pub modify: Vec<Resource>,
    /// Old resources `--prune` would delete; plain `--yes` keeps them.
    pub delete_on_prune: Vec<Resource>,
    pub delete: Vec<Resource>,
    /// kOps said `Must specify --yes`, or listed creations, modifications
    /// or deletions during update (prune-only deletions count only through
    /// kOps' own line: `update --yes` without `--prune` leaves them).
    pub needs_apply: bool,
    /// What the parser skipped or found odd, one line each.
    pub warnings: Vec<String>,
}

/// One resource (kOps task) in a section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: String,
    pub name: String,
    pub fields: Vec<FieldChange>,
}

/// One field of a resource: its value when created, `old -> new` when
/// modified, or a multi-line diff (lines joined with `\n`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub value: String,
}

/// The counts GitLab's merge-request widget shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

impl Counts {
    /// `N to create, M to modify, K to delete`.
    pub fn summary(&self) -> String {
        format!(
            "{} to create, {} to modify, {} to delete",
            self.create, self.update, self.delete
        )
    }
}

impl UpdatePlan {
    pub fn counts(&self) -> Counts {
        Counts {
            create: self.create.len(),
            update: self.modify.len(),
            delete: self.delete_on_prune.len() + self.delete.len(),
        }
    }

    /// Whether kOps listed anything at all.
    pub fn has_changes(&self) -> bool {
        !(self.create.is_empty()
            && self.modify.is_empty()
            && self.delete_on_prune.is_empty()
            && self.delete.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Outside any section (log text, trailers).
    Outside,
    Create,
    Modify,
    DeleteOnPrune,
    Delete,
    /// A header this parser does not know; its items are skipped.
    Unknown,
}

struct Parser {
    plan: UpdatePlan,
    section: Section,
    /// The last resource of `section` is open for fields.
    in_resource: bool,
    /// The last field of that resource takes continuation lines.
    field_open: bool,
    /// Blank lines seen since the last content line: kept inside a
    /// multi-line value if it goes on, dropped otherwise.
    blanks: usize,
    /// The open field's value is still to come on the following lines (its
    /// header had no value), so the first one starts it.
    fresh_multiline: bool,
    must_apply: bool,
    no_changes: bool,
}

/// Parses `kops update cluster` output (stdout; stderr mixed in is fine).
pub fn parse_update_output(text: &str) -> UpdatePlan {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let banner = banner_lines(&lines);
    let mut p = Parser {
        plan: UpdatePlan::default(),
        section: Section::Outside,
        in_resource: false,
        field_open: false,
        blanks: 0,
        fresh_multiline: false,
        must_apply: false,
        no_changes: false,
    };
    for (i, line) in lines.iter().enumerate() {
        if banner.get(i).copied().unwrap_or(false) {
            continue;
        }
        p.line(i + 1, line);
    }
    p.finish()
}

/// Marks the lines of `*****` banner blocks: each pair of star lines and
/// everything between them. A star line without a partner is skipped alone,
/// so an unterminated banner never swallows the plan.
fn banner_lines(lines: &[&str]) -> Vec<bool> {
    let is_star = |l: &&str| {
        let l = l.trim_end();
        l.len() >= 10 && l.bytes().all(|b| b == b'*')
    };
    let stars: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_star(l))
        .map(|(i, _)| i)
        .collect();
    let mut skip = vec![false; lines.len()];
    for pair in stars.chunks(2) {
        match *pair {
            [open, close] => skip[open..=close].iter_mut().for_each(|s| *s = true),
            [lone] => skip[lone] = true,
            _ => {}
        }
    }
    skip
}

impl Parser {
    fn warn(&mut self, lineno: usize, message: impl AsRef<str>) {
        self.plan
            .warnings
            .push(format!("line {lineno}: {}", message.as_ref()));
    }

    fn section_vec(&mut self) -> Option<&mut Vec<Resource>> {
        match self.section {
            Section::Create => Some(&mut self.plan.create),
            Section::Modify => Some(&mut self.plan.modify),
            Section::DeleteOnPrune => Some(&mut self.plan.delete_on_prune),
            Section::Delete => Some(&mut self.plan.delete),
            Section::Outside | Section::Unknown => None,
        }
    }

    fn current_resource(&mut self) -> Option<&mut Resource> {
        if !self.in_resource {
            return None;
        }
        self.section_vec().and_then(|v| v.last_mut())
    }

    fn line(&mut self, lineno: usize, line: &str) {
        let indent_len = line.len() - line.trim_start().len();
        let indent = &line[..indent_len];
        // kOps logs start at column 0; a value line that happens to look
        // like one is indented and stays part of its value.
        if indent.is_empty() && is_klog_line(line) {
            return;
        }
        if line.trim().is_empty() && !indent.contains('\t') {
            self.blanks += 1;
            return;
        }
        if indent.is_empty() {
            self.blanks = 0;
            self.top_level(lineno, line.trim_end());
        } else if indent.contains('\t') {
            self.field_line(lineno, line);
        } else if indent.len() <= 2 {
            self.blanks = 0;
            self.resource_line(line.trim());
        } else {
            // More indented than a resource, without kOps' tab layout: the
            // value of the open field goes on.
            self.continuation(lineno, line.trim_end());
        }
    }

    fn top_level(&mut self, lineno: usize, line: &str) {
        self.in_resource = false;
        self.field_open = false;
        self.section = match line {
            CREATE_HEADER => Section::Create,
            MODIFY_HEADER => Section::Modify,
            PRUNE_HEADER => Section::DeleteOnPrune,
            DELETE_HEADER | LEGACY_DELETE_HEADER => Section::Delete,
            _ if line.starts_with(MUST_APPLY) => {
                self.must_apply = true;
                Section::Outside
            }
            _ if line.starts_with(NO_CHANGES) => {
                self.no_changes = true;
                Section::Outside
            }
            _ if line.ends_with(':') => {
                self.warn(
                    lineno,
                    format!("unknown section `{line}`: its items are not in the plan"),
                );
                Section::Unknown
            }
            // Other text (kOps' notes after the plan, banners' contents
            // without stars): ends the section, is not part of the plan.
            _ => Section::Outside,
        };
    }

    fn resource_line(&mut self, text: &str) {
        self.field_open = false;
        let Some(list) = self.section_vec() else {
            self.in_resource = false;
            return;
        };
        list.push(parse_resource(text));
        self.in_resource = true;
    }

    fn field_line(&mut self, lineno: usize, line: &str) {
        // Everything after the first tab: `<field padded>\t<value>`, or the
        // padded field alone when a multi-line value follows.
        let rest = line.split_once('\t').map(|(_, r)| r).unwrap_or_default();
        let (column, value) = match rest.split_once('\t') {
            Some((c, v)) => (c, Some(v)),
            None => (rest, None),
        };
        let starts_field = column.chars().next().is_some_and(|c| !c.is_whitespace());
        if starts_field {
            self.blanks = 0;
            let field = column.trim_end().to_string();
            // A value on the header line is one line; kOps pads it with a
            // leading space. None: the value is on the following lines.
            let value = value.map(|v| v.trim().to_string());
            let Some(resource) = self.current_resource() else {
                if matches!(self.section, Section::Unknown | Section::Outside) {
                    return;
                }
                self.warn(
                    lineno,
                    format!("field `{field}` outside a resource: skipped"),
                );
                return;
            };
            let fresh = value.is_none();
            resource.fields.push(FieldChange {
                field,
                value: value.unwrap_or_default(),
            });
            self.field_open = true;
            self.fresh_multiline = fresh;
        } else {
            let content = value.unwrap_or(column).trim_end();
            self.continuation(lineno, content);
        }
    }

    fn continuation(&mut self, lineno: usize, content: &str) {
        let blanks = std::mem::take(&mut self.blanks);
        let fresh = std::mem::take(&mut self.fresh_multiline);
        if !self.field_open {
            if self.in_resource {
                self.warn(lineno, "value line outside a field: skipped");
            }
            return;
        }
        let Some(field) = self.current_resource().and_then(|r| r.fields.last_mut()) else {
            return;
        };
        for _ in 0..blanks {
            field.value.push('\n');
        }
        if !fresh {
            field.value.push('\n');
        }
        field.value.push_str(content);
    }

    fn finish(mut self) -> UpdatePlan {
        let changes = self.plan.create.len() + self.plan.modify.len() + self.plan.delete.len();
        self.plan.needs_apply = self.must_apply || changes > 0;
        if self.no_changes && self.plan.has_changes() {
            self.plan
                .warnings
                .push(format!("kOps said `{NO_CHANGES}` but listed resources"));
        }
        if !self.must_apply && !self.no_changes {
            self.plan.warnings.push(format!(
                "neither `{MUST_APPLY}` nor `{NO_CHANGES}` found: was this a dry run?"
            ));
        }
        self.plan
    }
}

/// `Type/name` (creates, modifies) or `Type<spaces>item` (kOps' deletion
/// lines, where the item may itself contain `/`).
fn parse_resource(text: &str) -> Resource {
    let first = text.split_whitespace().next().unwrap_or_default();
    let (kind, name) = if first.contains('/') {
        text.split_once('/').unwrap_or((text, ""))
    } else {
        text.split_once(char::is_whitespace).unwrap_or((text, ""))
    };
    Resource {
        kind: kind.trim().to_string(),
        name: name.trim().to_string(),
        fields: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEW_CLUSTER: &str = include_str!("testdata/update_new_cluster.txt");
    const CHANGED_IG: &str = include_str!("testdata/update_changed_ig.txt");
    const DELETIONS: &str = include_str!("testdata/update_deletions.txt");
    const NO_CHANGES_OUT: &str = include_str!("testdata/update_no_changes.txt");
    const NOISY: &str = include_str!("testdata/update_noisy.txt");

    fn names(list: &[Resource]) -> Vec<String> {
        list.iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    }

    fn field<'a>(r: &'a Resource, name: &str) -> &'a str {
        r.fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| f.value.as_str())
            .unwrap_or_else(|| panic!("{}/{} has no field {name}", r.kind, r.name))
    }

    #[test]
    fn new_cluster_is_all_creates() {
        let plan = parse_update_output(NEW_CLUSTER);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert!(plan.needs_apply);
        assert_eq!(
            plan.counts(),
            Counts {
                create: 14,
                update: 0,
                delete: 0
            }
        );
        assert_eq!(
            plan.counts().summary(),
            "14 to create, 0 to modify, 0 to delete"
        );
        let n = names(&plan.create);
        assert_eq!(
            n[0],
            "AutoscalingGroup/control-plane-us-test-1a.masters.minimal.example.com"
        );
        assert!(n.contains(&"Route/0.0.0.0/0".to_string()), "{n:?}");
        assert_eq!(n.last().unwrap(), "VPC/minimal.example.com");

        let asg = &plan.create[0];
        assert_eq!(asg.fields.len(), 11);
        assert_eq!(field(asg, "MaxSize"), "1");
        assert!(field(asg, "Tags").starts_with("{KubernetesCluster: minimal.example.com"));
        let keypair = plan.create.iter().find(|r| r.kind == "Keypair").unwrap();
        assert_eq!(field(keypair, "Issuer"), "");
        assert_eq!(field(keypair, "Type"), "ca");

        let role = plan.create.iter().find(|r| r.kind == "IAMRole").unwrap();
        let doc = field(role, "RolePolicyDocument");
        assert_eq!(doc.lines().count(), 12);
        assert!(doc.starts_with("{\n  \"Statement\": ["), "{doc}");
        assert!(doc.contains("\n        \"Service\": \"ec2.amazonaws.com\"\n"));
        let lt = plan
            .create
            .iter()
            .find(|r| r.kind == "LaunchTemplate")
            .unwrap();
        let user_data = field(lt, "UserData");
        assert!(
            user_data.starts_with("#!/bin/bash\nset -o errexit"),
            "{user_data}"
        );
        // The empty lines inside the script are kept.
        assert!(
            user_data.contains("set -o pipefail\n\nNODEUP_URL_AMD64="),
            "{user_data}"
        );
        assert!(user_data.ends_with("__EOF_KUBE_ENV"));
        assert_eq!(field(lt, "InstanceType"), "t3.medium");
    }

    #[test]
    fn changed_instance_group_lists_modified_fields_with_multiline_diffs() {
        let plan = parse_update_output(CHANGED_IG);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert!(plan.needs_apply);
        assert_eq!(
            names(&plan.modify),
            [
                "AutoscalingGroup/nodes-us-test-1a.minimal.example.com",
                "LaunchTemplate/nodes-us-test-1a.minimal.example.com",
                "ManagedFile/nodeupconfig-nodes-us-test-1a",
                "InstanceGroupSpec/nodes-us-test-1a",
            ]
        );
        assert_eq!(plan.counts().update, 4);
        let asg = &plan.modify[0];
        assert_eq!(
            asg.fields,
            [
                FieldChange {
                    field: "MaxSize".into(),
                    value: "2 -> 5".into()
                },
                FieldChange {
                    field: "MinSize".into(),
                    value: "2 -> 3".into()
                },
            ]
        );
        let lt = &plan.modify[1];
        assert_eq!(field(lt, "InstanceType"), "t3.medium -> m6i.large");
        assert_eq!(
            field(lt, "Tags"),
            "{kops.k8s.io/instancegroup: nodes-us-test-1a, team: a -> b}"
        );
        assert_eq!(
            field(lt, "UserData"),
            "...\n  cat > conf_hash <<'__EOF_KUBE_ENV'\n\
             - ConfigHash: 6ZDLrMj4Cc0TQw3I7Y4Vv0a8vDE4fFvYqMxtpt0t3p0=\n\
             + ConfigHash: 1vSmQhoUhy8SMU5YGx1X2aBbVqMtFJ1IfQ3tHD0gG6A=\n  __EOF_KUBE_ENV\n..."
        );
        let contents = field(&plan.modify[2], "Contents");
        assert_eq!(contents.lines().count(), 10);
        assert!(
            contents.starts_with("  Assets:\n    amd64:\n-   - 5ad49"),
            "{contents}"
        );
        // A value line holding only spaces becomes an empty line.
        assert!(
            contents.contains("/kubelet\n\n  KubeletConfig:"),
            "{contents}"
        );
        assert!(contents.ends_with("+     memory: 256Mi"));
        // `Spec {` with the diff on the following lines.
        let spec = field(&plan.modify[3], "Spec");
        assert_eq!(
            spec,
            "{\n   \"machineType\": \"t3.medium\" -> \"m6i.large\",\n   \"maxSize\": 2 -> 5,\n   \"minSize\": 2 -> 3\n }"
        );
    }

    #[test]
    fn deletions_in_both_sections() {
        let plan = parse_update_output(DELETIONS);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert_eq!(
            plan.counts(),
            Counts {
                create: 0,
                update: 1,
                delete: 5
            }
        );
        assert_eq!(
            names(&plan.delete_on_prune),
            [
                "LaunchTemplate/nodes-us-test-1b.minimal.example.com",
                "AutoscalingGroup/nodes-us-test-1b.minimal.example.com",
            ]
        );
        assert_eq!(
            names(&plan.delete),
            [
                "ManagedFile/minimal.example.com-addons-coredns.addons.k8s.io-k8s-1.12",
                "ManagedFile/manifests/static/kube-apiserver-healthcheck.yaml",
                "IAMRolePolicy/nodes-extra.minimal.example.com",
            ]
        );
        assert_eq!(
            plan.delete[1].name,
            "manifests/static/kube-apiserver-healthcheck.yaml"
        );
        assert_eq!(
            field(&plan.modify[0], "Description"),
            "\"\" -> \"nodes to control plane\""
        );
        assert!(plan.needs_apply);
    }

    #[test]
    fn no_changes() {
        let plan = parse_update_output(NO_CHANGES_OUT);
        assert_eq!(
            plan,
            UpdatePlan {
                needs_apply: false,
                ..UpdatePlan::default()
            }
        );
        assert_eq!(
            plan.counts().summary(),
            "0 to create, 0 to modify, 0 to delete"
        );
    }

    #[test]
    fn noisy_output_skips_logs_banners_and_unknown_sections() {
        let plan = parse_update_output(NOISY);
        // Nothing from inside the banner.
        assert_eq!(
            names(&plan.create),
            ["SecurityGroupRule/https-elb-to-master"]
        );
        assert_eq!(
            plan.create[0].fields,
            [
                FieldChange {
                    field: "Protocol".into(),
                    value: "tcp".into()
                },
                FieldChange {
                    field: "FromPort".into(),
                    value: "443".into()
                },
                FieldChange {
                    field: "ToPort".into(),
                    value: "443".into()
                },
            ]
        );
        assert_eq!(
            names(&plan.modify),
            ["ManagedFile/minimal.example.com-addons-bootstrap"]
        );
        assert_eq!(
            field(&plan.modify[0], "Contents"),
            "  addons:\n  - id: k8s-1.16\n\n        -   version: 9.99.0-kops.1\n        +   version: 9.99.0-kops.2"
        );
        assert_eq!(names(&plan.delete), ["Instance/i-0123456789abcdef0"]);
        assert!(plan.delete_on_prune.is_empty());
        assert!(plan.needs_apply);
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("unknown section `Will frobnicate resources:`"));
    }

    #[test]
    fn crlf_and_missing_trailer() {
        let plan = parse_update_output(&CHANGED_IG.replace('\n', "\r\n"));
        assert_eq!(plan.modify, parse_update_output(CHANGED_IG).modify);
        let cut = CHANGED_IG.replace(MUST_APPLY, "");
        let plan = parse_update_output(&cut);
        assert!(plan.needs_apply, "changes listed");
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("was this a dry run"))
        );
        let plan = parse_update_output("");
        assert!(!plan.needs_apply);
        assert!(!plan.has_changes());
    }

    #[test]
    fn odd_lines_warn_and_never_panic() {
        let text = "Will create resources:\n  \tOrphan              \tfield\n  \t                    \tvalue line\n  A/b\n   stray\n\t\n*****\nWill modify resources:\n  X/y\n  \tF\tv\n  \t\tw\nMust specify --yes to apply changes\n";
        let plan = parse_update_output(text);
        assert_eq!(names(&plan.create), ["A/b"]);
        assert_eq!(
            plan.modify[0].fields,
            [FieldChange {
                field: "F".into(),
                value: "v\nw".into()
            }]
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.starts_with("line 2: field `Orphan`")),
            "{:?}",
            plan.warnings
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("value line outside a field")),
            "{:?}",
            plan.warnings
        );
    }

    /// Renders a plan the way kOps' dry-run target prints it.
    fn render(plan: &UpdatePlan, deletion_style_kops: bool) -> String {
        let mut out = String::from(
            "I1121 12:00:00.000000   1234 executor.go:111] Tasks: 0 done / 9 total; 9 can run\n",
        );
        let mut resources = |header: &str, list: &[Resource], deletion: bool| {
            if list.is_empty() {
                return;
            }
            out.push_str(header);
            out.push('\n');
            for r in list {
                if deletion && deletion_style_kops {
                    out.push_str(&format!("  {:<20} {}\n", r.kind, r.name));
                } else {
                    out.push_str(&format!("  {}/{}\n", r.kind, r.name));
                }
                for f in &r.fields {
                    let lines: Vec<&str> = f.value.split('\n').collect();
                    if lines.len() == 1 {
                        out.push_str(&format!("  \t{:<20}\t {}\n", f.field, f.value));
                    } else {
                        out.push_str(&format!("  \t{:<20}\n", f.field));
                        for l in lines {
                            out.push_str(&format!("  \t{:<20}\t{}\n", "", l));
                        }
                    }
                }
                out.push('\n');
            }
        };
        resources(CREATE_HEADER, &plan.create, false);
        resources(MODIFY_HEADER, &plan.modify, false);
        resources(PRUNE_HEADER, &plan.delete_on_prune, true);
        resources(DELETE_HEADER, &plan.delete, true);
        out.push_str(if plan.needs_apply {
            MUST_APPLY
        } else {
            NO_CHANGES
        });
        out.push('\n');
        out
    }

    fn value_line() -> impl Strategy<Value = String> {
        // Printable, no tabs, no trailing whitespace (kOps' lines are
        // compared trimmed at the end).
        "[ -~]{0,40}".prop_map(|s| s.trim_end().to_string())
    }

    fn field_change() -> impl Strategy<Value = FieldChange> {
        let single = "[!-~]([ -~]{0,40}[!-~])?".prop_map(String::from);
        let multi = prop::collection::vec(value_line(), 2..6).prop_map(|l| l.join("\n"));
        ("[A-Z][A-Za-z0-9]{0,24}", prop_oneof![single, multi])
            .prop_map(|(field, value)| FieldChange { field, value })
    }

    fn resource(with_fields: bool) -> impl Strategy<Value = Resource> {
        let fields = if with_fields {
            prop::collection::vec(field_change(), 0..5).boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        (
            "[A-Z][A-Za-z0-9]{0,22}",
            "[a-z0-9][a-z0-9./-]{0,40}",
            fields,
        )
            .prop_map(|(kind, name, fields)| Resource { kind, name, fields })
    }

    fn plan() -> impl Strategy<Value = UpdatePlan> {
        (
            prop::collection::vec(resource(true), 0..4),
            prop::collection::vec(resource(true), 0..4),
            prop::collection::vec(resource(false), 0..3),
            prop::collection::vec(resource(false), 0..3),
        )
            .prop_map(|(create, modify, delete_on_prune, delete)| {
                let mut plan = UpdatePlan {
                    create,
                    modify,
                    delete_on_prune,
                    delete,
                    needs_apply: false,
                    warnings: Vec::new(),
                };
                plan.needs_apply = plan.has_changes();
                plan
            })
    }

    fn noise_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(CREATE_HEADER.to_string()),
            Just(MODIFY_HEADER.to_string()),
            Just(PRUNE_HEADER.to_string()),
            Just(DELETE_HEADER.to_string()),
            Just(MUST_APPLY.to_string()),
            Just(NO_CHANGES.to_string()),
            Just("*".repeat(40)),
            Just("Weird header:".to_string()),
            "  [ -~]{0,12}",
            "  \t[ -~\t]{0,30}",
            "[ \t]{0,4}[ -~]{0,20}",
            "I1121 12:00:00.000000 1 x.go:1] [ -~]{0,10}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_plans_rendered_as_kops_does(plan in plan(), kops_deletions in any::<bool>()) {
            let parsed = parse_update_output(&render(&plan, kops_deletions));
            prop_assert_eq!(parsed, plan);
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = parse_update_output(&text);
        }

        #[test]
        fn never_panics_on_plausible_line_soup(lines in prop::collection::vec(noise_line(), 0..40)) {
            let plan = parse_update_output(&lines.join("\n"));
            let c = plan.counts();
            prop_assert_eq!(c.delete, plan.delete.len() + plan.delete_on_prune.len());
        }
    }
}
