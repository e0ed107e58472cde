//! Parsing what `kops rolling-update cluster` prints — the instance-group
//! table and kOps' conclusion after it — into a [`RollPlan`]:
//!
//! ```text
//! NAME                STATUS      NEEDUPDATE  READY  MIN  TARGET  MAX  NODES
//! control-plane-a     Ready       0           1      1    1       1    1
//! nodes-a             NeedsUpdate 2           0      2    2       2    2
//!
//! Must specify --yes to rolling-update.      (or: No rolling-update required.)
//! ```
//!
//! Columns are whitespace-aligned (Go's tabwriter; tabs or spaces) and found
//! by their header names. NAME and STATUS are required; NEEDUPDATE, READY,
//! MIN, TARGET, MAX and NODES are read when the header has them and are
//! `None` otherwise (kOps before about 1.20 prints no TARGET, `--cloudonly`
//! no NODES); other columns are ignored. klog lines are skipped anywhere.
//!
//! The table runs from its header to a blank line, a conclusion line or the
//! end of the output. When kOps printed no conclusion it went on to roll,
//! and the drain it runs writes `evicting pod NS/NAME` to stdout straight
//! after the table: there the table also ends at the first line that is not
//! shaped like a row (see `Columns::row_shaped`).
//!
//! Nothing in the table is dropped silently and nothing is guessed: a table
//! line kopsci cannot read (another number of cells than the header, a count
//! that is not a number) is left out of `rows` and becomes a warning that
//! names the line and quotes it, and the table text is kept in `raw_table`
//! for the report. A half-read row is not kept: its `None`s would read as
//! columns kOps did not print. Only output with neither a table nor a
//! conclusion line is an error.

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
use crate::kops::klog::is_klog_line;

pub const MUST_ROLL: &str = "Must specify --yes to rolling-update.";
pub const NO_ROLL: &str = "No rolling-update required.";
const COMMAND: &str = "kops rolling-update cluster";

/// The table and what kOps concluded from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollPlan {
    /// The rows kopsci could read, in kOps' order; unreadable ones are in
    /// `warnings`.
    pub rows: Vec<RollRow>,
    /// What kOps said: `Some(true)` after [`MUST_ROLL`], `Some(false)` after
    /// [`NO_ROLL`], `None` when it printed neither, which it does only when
    /// it goes on to roll (`--yes`). A report's headline comes from this,
    /// not from counting rows.
    #[serde(default)]
    pub required: Option<bool>,
    /// A rolling update is (or was) due: kOps asked for `--yes`, or the
    /// roll ran.
    pub needs_roll: bool,
    /// The roll ran: kOps printed the table and neither conclusion, which it
    /// does only when it goes on to replace instances (`--yes`).
    pub applied: bool,
    /// What kopsci could not read, each naming the output line and quoting
    /// it: table rows left out of `rows`, a second table, contradicting
    /// conclusions.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The table as kOps printed it (header and row lines, klog lines left
    /// out, `\n`-terminated); empty when there was none.
    #[serde(default)]
    pub raw_table: String,
}

impl RollPlan {
    /// The groups with instances to replace.
    pub fn pending(&self) -> impl Iterator<Item = &RollRow> {
        self.rows.iter().filter(|r| r.needs_update())
    }
}

/// One instance group. A count is `None` when the table has no such column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollRow {
    pub name: String,
    pub status: RollStatus,
    pub need_update: Option<u32>,
    pub ready: Option<u32>,
    pub min: Option<u32>,
    /// `None` with kOps before about 1.20.
    pub target: Option<u32>,
    pub max: Option<u32>,
    /// Kubernetes nodes; `None` with `--cloudonly`.
    pub nodes: Option<u32>,
}

impl RollRow {
    pub fn needs_update(&self) -> bool {
        self.need_update.is_some_and(|n| n > 0) || self.status == RollStatus::NeedsUpdate
    }
}

/// An instance group's STATUS cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RollStatus {
    Ready,
    NeedsUpdate,
    Other(String),
}

impl From<String> for RollStatus {
    fn from(s: String) -> RollStatus {
        match s.as_str() {
            "Ready" => RollStatus::Ready,
            "NeedsUpdate" => RollStatus::NeedsUpdate,
            _ => RollStatus::Other(s),
        }
    }
}

impl From<RollStatus> for String {
    fn from(s: RollStatus) -> String {
        match s {
            RollStatus::Ready => "Ready".into(),
            RollStatus::NeedsUpdate => "NeedsUpdate".into(),
            RollStatus::Other(s) => s,
        }
    }
}

/// Column indices, from the header line.
struct Columns {
    count: usize,
    name: usize,
    status: usize,
    need_update: Option<usize>,
    ready: Option<usize>,
    min: Option<usize>,
    target: Option<usize>,
    max: Option<usize>,
    nodes: Option<usize>,
}

impl Columns {
    /// A header is a line of upper-case column names with NAME and STATUS
    /// among them.
    fn from_header(cells: &[&str]) -> Option<Columns> {
        let column_name = |c: &&str| {
            c.starts_with(|ch: char| ch.is_ascii_uppercase())
                && c.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        };
        if !cells.iter().all(column_name) {
            return None;
        }
        let at = |n: &str| cells.iter().position(|c| *c == n);
        Some(Columns {
            count: cells.len(),
            name: at("NAME")?,
            status: at("STATUS")?,
            need_update: at("NEEDUPDATE"),
            ready: at("READY"),
            min: at("MIN"),
            target: at("TARGET"),
            max: at("MAX"),
            nodes: at("NODES"),
        })
    }

    /// Whether a line still belongs to the table of a roll that ran, where
    /// drain output (`evicting pod kube-system/coredns-…`) follows the rows
    /// with no blank line: its NAME cell could be an instance-group name,
    /// and it has the header's number of cells, a STATUS kOps prints, or at
    /// least two whole numbers. Such a line is a row or a warning; any other
    /// line ends the table.
    fn row_shaped(&self, cells: &[&str]) -> bool {
        let name_like = cells.get(self.name).is_some_and(|c| {
            c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        });
        let kops_status = cells
            .get(self.status)
            .is_some_and(|s| matches!(*s, "Ready" | "NeedsUpdate"));
        let numbers = cells.iter().filter(|c| c.parse::<u32>().is_ok()).count();
        name_like && (cells.len() == self.count || kops_status || numbers >= 2)
    }

    /// One row, or why it cannot be read.
    fn parse_row(&self, cells: &[&str]) -> std::result::Result<RollRow, String> {
        if cells.len() != self.count {
            return Err(format!(
                "{} cells where the header has {}",
                cells.len(),
                self.count
            ));
        }
        let number = |i: Option<usize>, column: &str| {
            i.map(|i| {
                cells[i]
                    .parse::<u32>()
                    .map_err(|_| format!("{column} `{}` is not a number", cells[i]))
            })
            .transpose()
        };
        Ok(RollRow {
            name: cells[self.name].to_string(),
            status: RollStatus::from(cells[self.status].to_string()),
            need_update: number(self.need_update, "NEEDUPDATE")?,
            ready: number(self.ready, "READY")?,
            min: number(self.min, "MIN")?,
            target: number(self.target, "TARGET")?,
            max: number(self.max, "MAX")?,
            nodes: number(self.nodes, "NODES")?,
        })
    }
}

/// `Some(true)` for [`MUST_ROLL`], `Some(false)` for [`NO_ROLL`].
fn conclusion(line: &str) -> Option<bool> {
    let line = line.trim();
    if line.starts_with(MUST_ROLL) {
        Some(true)
    } else if line.starts_with(NO_ROLL) {
        Some(false)
    } else {
        None
    }
}

/// Parses `kops rolling-update cluster` output (stdout; stderr mixed in is
/// fine).
pub fn parse_rolling_update_output(text: &str) -> Result<RollPlan> {
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.strip_suffix('\r').unwrap_or(raw)))
        .collect();
    // Before a conclusion kOps prints nothing but the table and a blank
    // line, so every line there is a row; only a roll that ran has other
    // output right after the table.
    let concluded = lines
        .iter()
        .any(|(_, l)| !is_klog_line(l) && conclusion(l).is_some());
    let mut plan = RollPlan::default();
    let mut table: Option<(usize, Columns)> = None;
    let mut in_table = false;
    let mut must_roll: Option<usize> = None;
    let mut no_roll: Option<usize> = None;
    for &(lineno, line) in &lines {
        if is_klog_line(line) {
            continue;
        }
        if let Some(required) = conclusion(line) {
            let seen = if required {
                &mut must_roll
            } else {
                &mut no_roll
            };
            seen.get_or_insert(lineno);
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.is_empty() {
            in_table = false;
            continue;
        }
        if let Some(columns) = Columns::from_header(&cells) {
            match &table {
                None => {
                    plan.raw_table = format!("{}\n", line.trim_end());
                    table = Some((lineno, columns));
                    in_table = true;
                }
                Some((first, _)) => {
                    plan.warnings.push(format!(
                        "line {lineno}: another instance-group table, not read (the table read starts at line {first}): `{}`",
                        line.trim()
                    ));
                    in_table = false;
                }
            }
            continue;
        }
        let Some((_, columns)) = table.as_ref().filter(|_| in_table) else {
            continue;
        };
        if !concluded && !columns.row_shaped(&cells) {
            in_table = false;
            continue;
        }
        plan.raw_table.push_str(line.trim_end());
        plan.raw_table.push('\n');
        match columns.parse_row(&cells) {
            Ok(row) => plan.rows.push(row),
            Err(why) => plan.warnings.push(format!(
                "line {lineno}: instance-group row not read ({why}): `{}`",
                line.trim()
            )),
        }
    }
    if table.is_none() && must_roll.is_none() && no_roll.is_none() {
        return Err(Error::KopsOutput {
            command: COMMAND,
            message: "no instance-group table (NAME STATUS …) and no conclusion line".into(),
        });
    }
    plan.required = match (must_roll, no_roll) {
        (Some(must), Some(no)) => {
            // Never seen from kOps; the safe reading is the one that does
            // not hide a roll.
            plan.warnings.push(format!(
                "kops printed both `{MUST_ROLL}` (line {must}) and `{NO_ROLL}` (line {no}): taking a rolling update as required"
            ));
            Some(true)
        }
        (Some(_), None) => Some(true),
        (None, Some(_)) => Some(false),
        (None, None) => None,
    };
    plan.applied = table.is_some() && plan.required.is_none();
    plan.needs_roll = plan.required.unwrap_or(plan.applied);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RollStatus::{NeedsUpdate, Ready};
    use proptest::prelude::*;

    const NEEDS_UPDATE: &str = include_str!("testdata/roll_needs_update.txt");
    const NO_UPDATE: &str = include_str!("testdata/roll_no_update.txt");
    const CLOUDONLY: &str = include_str!("testdata/roll_cloudonly.txt");
    const APPLIED: &str = include_str!("testdata/roll_applied.txt");
    const APPLIED_STDOUT: &str = include_str!("testdata/roll_applied_stdout.txt");
    const PRE_1_20: &str = include_str!("testdata/roll_pre120.txt");

    /// A row with NEEDUPDATE READY MIN TARGET MAX NODES (`None` = no column).
    fn row(name: &str, status: RollStatus, n: [Option<u32>; 6]) -> RollRow {
        RollRow {
            name: name.into(),
            status,
            need_update: n[0],
            ready: n[1],
            min: n[2],
            target: n[3],
            max: n[4],
            nodes: n[5],
        }
    }

    /// The rows of `roll_needs_update.txt` (and `roll_applied*.txt`), with
    /// or without the NODES column.
    fn minimal_rows(nodes: bool) -> Vec<RollRow> {
        let n = |v: u32| nodes.then_some(v);
        vec![
            row(
                "control-plane-us-test-1a",
                NeedsUpdate,
                [Some(1), Some(0), Some(1), Some(1), Some(1), n(1)],
            ),
            row(
                "nodes-us-test-1a",
                NeedsUpdate,
                [Some(2), Some(0), Some(2), Some(2), Some(3), n(2)],
            ),
            row(
                "nodes-us-test-1b",
                Ready,
                [Some(0), Some(2), Some(2), Some(2), Some(3), n(2)],
            ),
        ]
    }

    /// What a parse concludes: `required`, `needs_roll`, `applied`.
    struct Verdict(Option<bool>, bool, bool);
    /// A preview that kops concluded by asking for `--yes`.
    const ASKS_FOR_YES: Verdict = Verdict(Some(true), true, false);
    /// A preview that kops concluded with nothing to roll.
    const NOTHING_TO_ROLL: Verdict = Verdict(Some(false), false, false);
    /// A rolling update that ran, with no conclusion printed.
    const ROLL_RAN: Verdict = Verdict(None, true, true);

    struct Case {
        name: &'static str,
        text: String,
        rows: Vec<RollRow>,
        verdict: Verdict,
        /// One fragment per expected warning, in order.
        warnings: &'static [&'static str],
    }

    fn cases() -> Vec<Case> {
        // An instance group of one node with nothing to roll.
        let up_to_date = |name| {
            row(
                name,
                Ready,
                [Some(0), Some(1), Some(1), Some(1), Some(1), Some(1)],
            )
        };
        let header = "NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES";
        vec![
            Case {
                name: "preview that needs a roll",
                text: NEEDS_UPDATE.into(),
                rows: minimal_rows(true),
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "tab-separated table with nothing to do",
                text: NO_UPDATE.into(),
                rows: vec![
                    up_to_date("control-plane-us-test-1a"),
                    row(
                        "nodes-us-test-1a",
                        Ready,
                        [Some(0), Some(2), Some(2), Some(2), Some(3), Some(2)],
                    ),
                ],
                verdict: NOTHING_TO_ROLL,
                warnings: &[],
            },
            Case {
                name: "--cloudonly has no NODES column",
                text: CLOUDONLY.into(),
                rows: minimal_rows(false),
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "kOps before 1.20 has no TARGET column",
                text: PRE_1_20.into(),
                rows: vec![
                    row(
                        "master-us-central1-a",
                        NeedsUpdate,
                        [Some(1), Some(0), Some(1), None, Some(1), Some(1)],
                    ),
                    row(
                        "nodes",
                        NeedsUpdate,
                        [Some(3), Some(0), Some(3), None, Some(3), Some(3)],
                    ),
                ],
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "CRLF line endings",
                text: NEEDS_UPDATE.replace('\n', "\r\n"),
                rows: minimal_rows(true),
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "a roll that ran, stderr mixed in: no conclusion",
                text: APPLIED.into(),
                rows: minimal_rows(true),
                verdict: ROLL_RAN,
                warnings: &[],
            },
            Case {
                name: "a roll that ran, stdout only: drain output ends the table",
                text: APPLIED_STDOUT.into(),
                rows: minimal_rows(true),
                verdict: ROLL_RAN,
                warnings: &[],
            },
            Case {
                name: "a non-numeric count is a warning, the other rows stay",
                text: NEEDS_UPDATE.replace(
                    "nodes-us-test-1a         NeedsUpdate 2",
                    "nodes-us-test-1a         NeedsUpdate x",
                ),
                rows: {
                    let mut r = minimal_rows(true);
                    r.remove(1);
                    r
                },
                verdict: ASKS_FOR_YES,
                warnings: &[
                    "line 4: instance-group row not read (NEEDUPDATE `x` is not a number): `nodes-us-test-1a         NeedsUpdate x          0     2   2      3   2`",
                ],
            },
            Case {
                name: "a negative count is a warning",
                text: format!("{header}\na Ready 0 1 1 1 -1 1\n\n{NO_ROLL}\n"),
                rows: vec![],
                verdict: NOTHING_TO_ROLL,
                warnings: &[
                    "line 2: instance-group row not read (MAX `-1` is not a number): `a Ready 0 1 1 1 -1 1`",
                ],
            },
            Case {
                name: "a row with an extra cell is a warning",
                text: NEEDS_UPDATE.replace(
                    "nodes-us-test-1b         Ready       0          2     2   2      3   2",
                    "nodes-us-test-1b         Ready       0          2     2   2      3   2  9",
                ),
                rows: minimal_rows(true)[..2].to_vec(),
                verdict: ASKS_FOR_YES,
                warnings: &[
                    "line 5: instance-group row not read (9 cells where the header has 8): `nodes-us-test-1b         Ready       0          2     2   2      3   2  9`",
                ],
            },
            Case {
                name: "a row with a missing cell is a warning, even in a roll that ran",
                text: APPLIED.replace(
                    "nodes-us-test-1a         NeedsUpdate 2          0     2   2      3   2",
                    "nodes-us-test-1a         NeedsUpdate 2          0     2   2      3",
                ),
                rows: {
                    let mut r = minimal_rows(true);
                    r.remove(1);
                    r
                },
                verdict: ROLL_RAN,
                warnings: &[
                    "line 3: instance-group row not read (7 cells where the header has 8): `nodes-us-test-1a",
                ],
            },
            Case {
                name: "a row of garbage before a conclusion is a warning",
                text: format!("{header}\nlorem ipsum\na Ready 0 1 1 1 1 1\n\n{MUST_ROLL}\n"),
                rows: vec![up_to_date("a")],
                verdict: ASKS_FOR_YES,
                warnings: &[
                    "line 2: instance-group row not read (2 cells where the header has 8): `lorem ipsum`",
                ],
            },
            Case {
                name: "columns found by name, in any order, unknown ones ignored",
                text: format!(
                    "NODES MAX STATUS NAME ZONE NEEDUPDATE\n3 4 NeedsUpdate ig-a us-1a 2\n\n{MUST_ROLL}\n"
                ),
                rows: vec![row(
                    "ig-a",
                    NeedsUpdate,
                    [Some(2), None, None, None, Some(4), Some(3)],
                )],
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "NAME and STATUS alone make a table",
                text: format!("NAME STATUS\nig-a NeedsUpdate\nig-b Ready\n\n{MUST_ROLL}\n"),
                rows: vec![
                    row("ig-a", NeedsUpdate, [None; 6]),
                    row("ig-b", Ready, [None; 6]),
                ],
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "a header without STATUS is not a table",
                text: format!("NAME NEEDUPDATE\nig-a 1\n\n{NO_ROLL}\n"),
                rows: vec![],
                verdict: NOTHING_TO_ROLL,
                warnings: &[],
            },
            Case {
                name: "a conclusion without a table",
                text: format!("{NO_ROLL}\n"),
                rows: vec![],
                verdict: NOTHING_TO_ROLL,
                warnings: &[],
            },
            Case {
                name: "--force preview: kOps asks for --yes with nothing out of date",
                text: format!("{header}\nig-a Ready 0 1 1 1 1 1\n\n{MUST_ROLL}\n"),
                rows: vec![up_to_date("ig-a")],
                verdict: ASKS_FOR_YES,
                warnings: &[],
            },
            Case {
                name: "a second table is a warning",
                text: format!(
                    "{header}\nig-a Ready 0 1 1 1 1 1\n\n{NO_ROLL}\n{header}\nig-b NeedsUpdate 1 0 1 1 1 1\n\n{MUST_ROLL}\n"
                ),
                rows: vec![up_to_date("ig-a")],
                verdict: ASKS_FOR_YES,
                warnings: &[
                    "line 5: another instance-group table, not read (the table read starts at line 1): `NAME STATUS",
                    "kops printed both `Must specify --yes to rolling-update.` (line 8) and `No rolling-update required.` (line 4): taking a rolling update as required",
                ],
            },
        ]
    }

    #[test]
    fn parses_every_case() {
        for case in cases() {
            let plan = parse_rolling_update_output(&case.text)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(plan.rows, case.rows, "{}", case.name);
            let Verdict(required, needs_roll, applied) = case.verdict;
            assert_eq!(plan.required, required, "{}", case.name);
            assert_eq!(plan.needs_roll, needs_roll, "{}", case.name);
            assert_eq!(plan.applied, applied, "{}", case.name);
            assert_eq!(
                plan.warnings.len(),
                case.warnings.len(),
                "{}: {:#?}",
                case.name,
                plan.warnings
            );
            for (got, want) in plan.warnings.iter().zip(case.warnings) {
                assert!(got.starts_with(want), "{}: {got:?} !~ {want:?}", case.name);
            }
        }
    }

    #[test]
    fn keeps_the_raw_table_without_klog_lines_or_what_follows() {
        let plan = parse_rolling_update_output(CLOUDONLY).unwrap();
        let table: String = CLOUDONLY
            .lines()
            .skip(1)
            .take(4)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(plan.raw_table, table);
        let plan = parse_rolling_update_output(APPLIED_STDOUT).unwrap();
        assert_eq!(plan.raw_table.lines().count(), 4, "{}", plan.raw_table);
        assert!(!plan.raw_table.contains("evicting"));
        // An unreadable row stays in the raw table the report shows.
        let text = NEEDS_UPDATE.replace("NeedsUpdate 2", "NeedsUpdate x");
        let plan = parse_rolling_update_output(&text).unwrap();
        assert!(
            plan.raw_table
                .contains("nodes-us-test-1a         NeedsUpdate x")
        );
        assert_eq!(parse_rolling_update_output(NO_ROLL).unwrap().raw_table, "");
    }

    #[test]
    fn pending_counts_need_update_or_status() {
        let plan = parse_rolling_update_output(NEEDS_UPDATE).unwrap();
        assert_eq!(plan.pending().count(), 2);
        // Without NEEDUPDATE the STATUS alone says so.
        assert!(row("a", NeedsUpdate, [None; 6]).needs_update());
        assert!(!row("a", Ready, [None; 6]).needs_update());
        assert!(row("a", Ready, [Some(1), None, None, None, None, None]).needs_update());
    }

    #[test]
    fn output_without_a_table_is_an_error_unless_kops_concluded() {
        for text in [
            "",
            "Error: cluster not found\n",
            "I1121 12:10:00.000000   31337 context.go:12] No rolling-update required.\n",
            "NAME ROLE MACHINETYPE MIN MAX SUBNETS\n",
        ] {
            let err = parse_rolling_update_output(text).unwrap_err().to_string();
            assert!(
                err.starts_with("cannot parse the output of `kops rolling-update cluster`"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn plan_serialises_with_the_documented_fields() {
        let plan = parse_rolling_update_output(PRE_1_20).unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["required"], true);
        assert_eq!(json["rows"][0]["target"], serde_json::Value::Null);
        assert_eq!(json["rows"][0]["need_update"], 1);
        assert_eq!(json["warnings"], serde_json::json!([]));
        assert!(json["raw_table"].as_str().unwrap().starts_with("NAME\t"));
        let back: RollPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
        // A plan written before `required`, `warnings` and `raw_table`.
        let old: RollPlan =
            serde_json::from_str(r#"{"rows":[],"needs_roll":true,"applied":true}"#).unwrap();
        assert_eq!(old.required, None);
        assert!(old.warnings.is_empty() && old.raw_table.is_empty());
    }

    #[test]
    fn status_serialises_as_kops_prints_it() {
        let json = serde_json::to_string(&[
            RollStatus::Ready,
            RollStatus::NeedsUpdate,
            RollStatus::Other("Unknown".into()),
        ])
        .unwrap();
        assert_eq!(json, r#"["Ready","NeedsUpdate","Unknown"]"#);
        let back: Vec<RollStatus> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[2], RollStatus::Other("Unknown".into()));
    }

    const OPTIONAL: [&str; 6] = ["NEEDUPDATE", "READY", "MIN", "TARGET", "MAX", "NODES"];

    /// A table layout: the header's columns in order.
    fn layout(shuffle: bool) -> impl Strategy<Value = Vec<&'static str>> {
        any::<[bool; 6]>()
            .prop_map(|keep| {
                let mut cols = vec!["NAME", "STATUS"];
                cols.extend(
                    OPTIONAL
                        .iter()
                        .zip(keep)
                        .filter(|(_, k)| *k)
                        .map(|(c, _)| *c),
                );
                cols
            })
            .prop_flat_map(move |cols| {
                if shuffle {
                    Just(cols).prop_shuffle().boxed()
                } else {
                    Just(cols).boxed()
                }
            })
    }

    /// A row with every count; [`cells`] prints those the layout has.
    fn full_row(kops_status_only: bool) -> impl Strategy<Value = RollRow> {
        let status = if kops_status_only {
            prop_oneof![Just(Ready), Just(NeedsUpdate)].boxed()
        } else {
            prop_oneof![
                Just(Ready),
                Just(NeedsUpdate),
                "[A-Z][a-zA-Z]{0,10}".prop_map(RollStatus::from),
            ]
            .boxed()
        };
        ("[a-z][a-z0-9.-]{0,30}", status, any::<[u32; 6]>())
            .prop_map(|(name, status, n)| row(&name, status, n.map(Some)))
    }

    fn cells(r: &RollRow, cols: &[&str]) -> Vec<String> {
        cols.iter()
            .map(|c| match *c {
                "NAME" => r.name.clone(),
                "STATUS" => String::from(r.status.clone()),
                "NEEDUPDATE" => r.need_update.unwrap().to_string(),
                "READY" => r.ready.unwrap().to_string(),
                "MIN" => r.min.unwrap().to_string(),
                "TARGET" => r.target.unwrap().to_string(),
                "MAX" => r.max.unwrap().to_string(),
                "NODES" => r.nodes.unwrap().to_string(),
                _ => unreachable!(),
            })
            .collect()
    }

    /// What the parser should read from `r` printed with `cols`.
    fn as_read(r: &RollRow, cols: &[&str]) -> RollRow {
        let has = |c: &str, v: Option<u32>| v.filter(|_| cols.contains(&c));
        RollRow {
            name: r.name.clone(),
            status: r.status.clone(),
            need_update: has("NEEDUPDATE", r.need_update),
            ready: has("READY", r.ready),
            min: has("MIN", r.min),
            target: has("TARGET", r.target),
            max: has("MAX", r.max),
            nodes: has("NODES", r.nodes),
        }
    }

    /// Prints a table the way kOps does; `trailer` `None` is a roll that ran.
    fn render(lines: &[Vec<String>], tabs: bool, crlf: bool, trailer: Option<&str>) -> String {
        let sep = if tabs { "\t" } else { "   " };
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut out: String = lines.iter().map(|l| l.join(sep) + eol).collect();
        if let Some(t) = trailer {
            out.push_str(&format!("{eol}{t}{eol}"));
        }
        out
    }

    fn trailer() -> impl Strategy<Value = Option<&'static str>> {
        prop_oneof![Just(Some(MUST_ROLL)), Just(Some(NO_ROLL)), Just(None)]
    }

    /// How a generated row line is damaged.
    #[derive(Debug, Clone)]
    enum Damage {
        None,
        /// A count cell (picked by index among the counts) that is no number.
        NotANumber(usize, String),
        ExtraCell(String),
        /// Drop a cell (picked by index; NAME and STATUS too before a
        /// conclusion).
        MissingCell(usize),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            3 => Just(Damage::None),
            1 => (any::<usize>(), "[a-z]{1,3}|-[1-9][0-9]{0,3}|[0-9]+\\.[0-9]")
                .prop_map(|(i, s)| Damage::NotANumber(i, s)),
            1 => "[a-z0-9]{1,6}".prop_map(Damage::ExtraCell),
            1 => any::<usize>().prop_map(Damage::MissingCell),
        ]
    }

    /// Applies `damage` to a row's cells; whether the line is still intact.
    fn apply(damage: &Damage, cols: &[&str], cells: &mut Vec<String>, concluded: bool) -> bool {
        match damage {
            Damage::None => true,
            Damage::NotANumber(i, s) => {
                let counts: Vec<usize> = (0..cols.len())
                    .filter(|&c| OPTIONAL.contains(&cols[c]))
                    .collect();
                if counts.is_empty() {
                    return true;
                }
                cells[counts[i % counts.len()]] = s.clone();
                false
            }
            Damage::ExtraCell(s) => {
                cells.push(s.clone());
                false
            }
            Damage::MissingCell(i) => {
                // After a roll kOps' lines keep NAME and STATUS (what tells
                // a row from drain output); before a conclusion anything goes.
                let candidates: Vec<usize> = (0..cols.len())
                    .filter(|&c| concluded || !matches!(cols[c], "NAME" | "STATUS"))
                    .collect();
                if candidates.is_empty() {
                    return true;
                }
                cells.remove(candidates[i % candidates.len()]);
                false
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips_rendered_tables(
            cols in layout(true),
            rows in prop::collection::vec(full_row(false), 0..6),
            tabs in any::<bool>(),
            crlf in any::<bool>(),
            trailer in trailer(),
        ) {
            let mut lines = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
            lines.extend(rows.iter().map(|r| cells(r, &cols)));
            let plan = parse_rolling_update_output(&render(&lines, tabs, crlf, trailer)).unwrap();
            let expected: Vec<RollRow> = rows.iter().map(|r| as_read(r, &cols)).collect();
            prop_assert_eq!(&plan.rows, &expected);
            prop_assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
            prop_assert_eq!(plan.required, trailer.map(|t| t == MUST_ROLL));
            prop_assert_eq!(plan.needs_roll, trailer != Some(NO_ROLL));
            prop_assert_eq!(plan.applied, trailer.is_none());
            prop_assert_eq!(plan.raw_table.lines().count(), rows.len() + 1);
        }

        /// Every row line of a table, damaged or not, ends up in `rows` or
        /// in a warning that names its line and quotes it — including
        /// when a roll ran and drain output follows the table. After a roll
        /// rows carry a STATUS kOps prints (`Status()` has no other).
        #[test]
        fn no_row_line_is_silently_lost(
            (concluded, cols, rows) in any::<bool>().prop_flat_map(|concluded| (
                Just(concluded),
                layout(false),
                prop::collection::vec((full_row(!concluded), damage()), 0..8),
            )),
            tabs in any::<bool>(),
            crlf in any::<bool>(),
            must in any::<bool>(),
            drain in any::<bool>(),
        ) {
            let mut lines = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
            let mut intact = Vec::new();
            let mut damaged = Vec::new();
            for (r, d) in &rows {
                let mut c = cells(r, &cols);
                if apply(d, &cols, &mut c, concluded) {
                    intact.push(as_read(r, &cols));
                } else {
                    damaged.push((lines.len() + 1, c.join(if tabs { "\t" } else { "   " })));
                }
                lines.push(c);
            }
            let trailer = concluded.then_some(if must { MUST_ROLL } else { NO_ROLL });
            // A real roll's drain output, straight after the table.
            if !concluded && drain && cols.len() != 3 {
                lines.push(vec!["evicting".into(), "pod".into(), "kube-system/coredns-5d7b8c6b7d-x2x9q".into()]);
            }
            let plan = parse_rolling_update_output(&render(&lines, tabs, crlf, trailer)).unwrap();
            prop_assert_eq!(&plan.rows, &intact);
            prop_assert_eq!(plan.warnings.len(), damaged.len(), "{:#?}", plan.warnings);
            for (warning, (lineno, raw)) in plan.warnings.iter().zip(&damaged) {
                let line_tag = format!("line {lineno}: ");
                prop_assert!(warning.starts_with(&line_tag), "{}", warning);
                let quoted = format!("`{}`", raw.trim());
                prop_assert!(warning.ends_with(&quoted), "{} !~ {}", warning, raw);
            }
            prop_assert_eq!(plan.raw_table.lines().count(), rows.len() + 1);
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = parse_rolling_update_output(&text);
        }

        #[test]
        fn never_panics_on_table_like_text(
            lines in prop::collection::vec(prop_oneof![
                Just("NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES".to_string()),
                Just("STATUS NAME MAX".to_string()),
                Just(MUST_ROLL.to_string()),
                Just(NO_ROLL.to_string()),
                Just(String::new()),
                "[a-z]{1,5}( [A-Za-z0-9-]{1,4}){0,8}\r?",
                any::<String>(),
            ], 0..20)
        ) {
            let _ = parse_rolling_update_output(&lines.join("\n"));
        }
    }
}
