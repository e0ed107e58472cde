//! Parsing the instance-group table `kops rolling-update cluster` prints
//! into a [`RollPlan`]:
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
//! by their header names, so their order does not matter; NODES is absent
//! with `--cloudonly`. klog lines are skipped anywhere. The table ends at a
//! blank line or a line with another number of cells. Unlike the update
//! plan, a row with a non-numeric count is an error: the roll report must
//! not guess.

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
use crate::kops::klog::is_klog_line;

pub const MUST_ROLL: &str = "Must specify --yes to rolling-update.";
pub const NO_ROLL: &str = "No rolling-update required.";
const COMMAND: &str = "kops rolling-update cluster";

/// The table and what kOps concluded from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollPlan {
    pub rows: Vec<RollRow>,
    /// A rolling update is (or was) due: kOps asked for `--yes`, a group
    /// needs updating, or the roll ran.
    pub needs_roll: bool,
    /// The roll ran: kOps printed the table and neither trailer, which it
    /// does only when it goes on to replace instances (`--yes`).
    pub applied: bool,
}

impl RollPlan {
    /// The groups with instances to replace.
    pub fn pending(&self) -> impl Iterator<Item = &RollRow> {
        self.rows.iter().filter(|r| r.needs_update())
    }
}

/// One instance group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollRow {
    pub name: String,
    pub status: RollStatus,
    pub need_update: u32,
    pub ready: u32,
    pub min: u32,
    pub target: u32,
    pub max: u32,
    /// Kubernetes nodes; `None` with `--cloudonly`.
    pub nodes: Option<u32>,
}

impl RollRow {
    pub fn needs_update(&self) -> bool {
        self.need_update > 0 || self.status == RollStatus::NeedsUpdate
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
    need_update: usize,
    ready: usize,
    min: usize,
    target: usize,
    max: usize,
    nodes: Option<usize>,
}

impl Columns {
    fn from_header(line: &str) -> Option<Columns> {
        let names: Vec<&str> = line.split_whitespace().collect();
        if names.first() != Some(&"NAME") {
            return None;
        }
        let at = |n: &str| names.iter().position(|c| *c == n);
        Some(Columns {
            count: names.len(),
            name: 0,
            status: at("STATUS")?,
            need_update: at("NEEDUPDATE")?,
            ready: at("READY")?,
            min: at("MIN")?,
            target: at("TARGET")?,
            max: at("MAX")?,
            nodes: at("NODES"),
        })
    }
}

/// Parses `kops rolling-update cluster` output (stdout; stderr mixed in is
/// fine).
pub fn parse_rolling_update_output(text: &str) -> Result<RollPlan> {
    let mut plan = RollPlan::default();
    let mut columns: Option<Columns> = None;
    let mut in_table = false;
    let mut must_roll = false;
    let mut no_roll = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let lineno = i + 1;
        if is_klog_line(line) {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with(MUST_ROLL) {
            must_roll = true;
            in_table = false;
            continue;
        }
        if trimmed.starts_with(NO_ROLL) {
            no_roll = true;
            in_table = false;
            continue;
        }
        if trimmed.is_empty() {
            in_table = false;
            continue;
        }
        if columns.is_none() {
            if let Some(c) = Columns::from_header(line) {
                columns = Some(c);
                in_table = true;
            }
            continue;
        }
        if let (true, Some(cols)) = (in_table, &columns) {
            // kOps ends the table with a blank line; a line of another shape
            // (what a roll prints next) ends it too.
            if line.split_whitespace().count() != cols.count {
                in_table = false;
                continue;
            }
            plan.rows.push(parse_row(cols, line, lineno)?);
        }
    }
    if columns.is_none() && !must_roll && !no_roll {
        return Err(Error::KopsOutput {
            command: COMMAND,
            message: "no instance-group table (NAME STATUS NEEDUPDATE …) and no conclusion line"
                .into(),
        });
    }
    plan.applied = columns.is_some() && !must_roll && !no_roll;
    plan.needs_roll =
        !no_roll && (must_roll || plan.applied || plan.rows.iter().any(RollRow::needs_update));
    Ok(plan)
}

fn parse_row(cols: &Columns, line: &str, lineno: usize) -> Result<RollRow> {
    let cells: Vec<&str> = line.split_whitespace().collect();
    let bad = |message: String| Error::KopsOutput {
        command: COMMAND,
        message: format!("line {lineno}: {message}: `{}`", line.trim()),
    };
    let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
    let number = |i: usize, column: &str| {
        cell(i)
            .parse::<u32>()
            .map_err(|_| bad(format!("{column} `{}` is not a number", cell(i))))
    };
    Ok(RollRow {
        name: cell(cols.name).to_string(),
        status: RollStatus::from(cell(cols.status).to_string()),
        need_update: number(cols.need_update, "NEEDUPDATE")?,
        ready: number(cols.ready, "READY")?,
        min: number(cols.min, "MIN")?,
        target: number(cols.target, "TARGET")?,
        max: number(cols.max, "MAX")?,
        nodes: cols.nodes.map(|i| number(i, "NODES")).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEEDS_UPDATE: &str = include_str!("testdata/roll_needs_update.txt");
    const NO_UPDATE: &str = include_str!("testdata/roll_no_update.txt");
    const CLOUDONLY: &str = include_str!("testdata/roll_cloudonly.txt");
    const APPLIED: &str = include_str!("testdata/roll_applied.txt");

    fn row(name: &str, status: RollStatus, n: [u32; 5], nodes: Option<u32>) -> RollRow {
        RollRow {
            name: name.into(),
            status,
            need_update: n[0],
            ready: n[1],
            min: n[2],
            target: n[3],
            max: n[4],
            nodes,
        }
    }

    #[test]
    fn preview_that_needs_a_roll() {
        let plan = parse_rolling_update_output(NEEDS_UPDATE).unwrap();
        assert_eq!(
            plan.rows,
            [
                row(
                    "control-plane-us-test-1a",
                    RollStatus::NeedsUpdate,
                    [1, 0, 1, 1, 1],
                    Some(1)
                ),
                row(
                    "nodes-us-test-1a",
                    RollStatus::NeedsUpdate,
                    [2, 0, 2, 2, 3],
                    Some(2)
                ),
                row(
                    "nodes-us-test-1b",
                    RollStatus::Ready,
                    [0, 2, 2, 2, 3],
                    Some(2)
                ),
            ]
        );
        assert!(plan.needs_roll);
        assert!(!plan.applied);
        assert_eq!(plan.pending().count(), 2);
    }

    #[test]
    fn tab_separated_table_with_nothing_to_do() {
        let plan = parse_rolling_update_output(NO_UPDATE).unwrap();
        assert_eq!(plan.rows.len(), 2);
        assert!(plan.rows.iter().all(|r| r.status == RollStatus::Ready));
        assert!(!plan.needs_roll);
        assert!(!plan.applied);
    }

    #[test]
    fn cloudonly_table_has_no_nodes_column() {
        let plan = parse_rolling_update_output(CLOUDONLY).unwrap();
        assert_eq!(plan.rows.len(), 3);
        assert!(plan.rows.iter().all(|r| r.nodes.is_none()));
        assert_eq!(plan.rows[1].max, 3);
        assert!(plan.needs_roll);
    }

    #[test]
    fn a_roll_that_ran_has_no_conclusion_line() {
        let plan = parse_rolling_update_output(APPLIED).unwrap();
        assert_eq!(plan.rows.len(), 3);
        assert!(plan.applied);
        assert!(plan.needs_roll);
    }

    #[test]
    fn non_numeric_cells_are_errors_naming_the_line() {
        let text = NEEDS_UPDATE.replace(
            "nodes-us-test-1a         NeedsUpdate 2",
            "nodes-us-test-1a         NeedsUpdate x",
        );
        let err = parse_rolling_update_output(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot parse the output of `kops rolling-update cluster`: line 4: NEEDUPDATE `x` is not a number: `nodes-us-test-1a"),
            "{err}"
        );
        let err = parse_rolling_update_output(
            "NAME STATUS NEEDUPDATE READY MIN TARGET MAX\na Ready 0 1 1 1 -1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2: MAX `-1` is not a number"), "{err}");
    }

    #[test]
    fn output_without_a_table_is_an_error_unless_kops_concluded() {
        assert!(parse_rolling_update_output("").is_err());
        assert!(parse_rolling_update_output("Error: cluster not found\n").is_err());
        let plan = parse_rolling_update_output("No rolling-update required.\n").unwrap();
        assert!(!plan.needs_roll && plan.rows.is_empty());
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

    fn render(rows: &[RollRow], nodes: bool, tabs: bool, trailer: &str) -> String {
        let mut lines = vec![{
            let mut h = vec![
                "NAME",
                "STATUS",
                "NEEDUPDATE",
                "READY",
                "MIN",
                "TARGET",
                "MAX",
            ];
            if nodes {
                h.push("NODES");
            }
            h.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        }];
        for r in rows {
            let mut cells = vec![
                r.name.clone(),
                String::from(r.status.clone()),
                r.need_update.to_string(),
                r.ready.to_string(),
                r.min.to_string(),
                r.target.to_string(),
                r.max.to_string(),
            ];
            if let Some(n) = r.nodes {
                cells.push(n.to_string());
            }
            lines.push(cells);
        }
        let sep = if tabs { "\t" } else { "   " };
        let mut out: String = lines.iter().map(|l| l.join(sep) + "\n").collect();
        out.push_str(&format!("\n{trailer}\n"));
        out
    }

    fn roll_row(nodes: bool) -> impl Strategy<Value = RollRow> {
        (
            "[a-z][a-z0-9.-]{0,30}",
            prop_oneof![
                Just(RollStatus::Ready),
                Just(RollStatus::NeedsUpdate),
                "[A-Z][a-zA-Z]{0,10}".prop_map(RollStatus::from),
            ],
            any::<[u32; 5]>(),
            any::<u32>(),
        )
            .prop_map(move |(name, status, n, nodes_n)| {
                row(&name, status, n, nodes.then_some(nodes_n))
            })
    }

    proptest! {
        #[test]
        fn round_trips_rendered_tables(
            (nodes, rows) in any::<bool>().prop_flat_map(|n| (Just(n), prop::collection::vec(roll_row(n), 0..6))),
            tabs in any::<bool>(),
            yes_needed in any::<bool>(),
        ) {
            let trailer = if yes_needed { MUST_ROLL } else { NO_ROLL };
            let plan = parse_rolling_update_output(&render(&rows, nodes, tabs, trailer)).unwrap();
            prop_assert_eq!(&plan.rows, &rows);
            prop_assert_eq!(plan.needs_roll, yes_needed);
            prop_assert!(!plan.applied);
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = parse_rolling_update_output(&text);
        }

        #[test]
        fn never_panics_on_table_like_text(
            lines in prop::collection::vec(prop_oneof![
                Just("NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES".to_string()),
                Just(MUST_ROLL.to_string()),
                Just(String::new()),
                "[a-z]{1,5}( [A-Za-z0-9-]{1,4}){0,8}",
                any::<String>(),
            ], 0..20)
        ) {
            let _ = parse_rolling_update_output(&lines.join("\n"));
        }
    }
}
