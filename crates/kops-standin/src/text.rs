//! Text layouts copied from kOps' Go code: tables through Go's
//! `text/tabwriter` with tab padding (kOps' `util/pkg/tables`), and the
//! line diff kOps prints for multi-line fields in `Will modify resources:`
//! (`pkg/diff.FormatDiff`: `+ `/`- `/`  ` prefixes, two lines of context,
//! `...` for what is skipped).

use similar::{Algorithm, ChangeTag};

/// Go's tabwriter settings in kOps' tables: minwidth 0, tabwidth 8,
/// padding 1, padchar '\t'.
const TAB_WIDTH: usize = 8;
const PADDING: usize = 1;

/// Lays out `rows` (the header first) as kOps' tables do: every cell but the
/// last of a row is padded with tabs to its column's width rounded up to a
/// tab stop; the last cell is written as is.
pub fn tab_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        // The last cell of a line is not tab-terminated, so it does not
        // take part in column widths.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let cell_width = widths[i].div_ceil(TAB_WIDTH) * TAB_WIDTH;
                let pad = cell_width.saturating_sub(cell.chars().count());
                for _ in 0..pad.div_ceil(TAB_WIDTH) {
                    out.push('\t');
                }
            }
        }
        out.push('\n');
    }
    out
}

/// kOps' `FormatDiff(old, new)`: one line per diff line, prefixed `- `, `+ `
/// or two spaces, two lines of context around changes, `...` where
/// unchanged lines were left out. Ends with a newline.
pub fn format_diff(old: &str, new: &str) -> String {
    let old_lines = split_lines(old);
    let new_lines = split_lines(new);
    let mut records: Vec<(ChangeTag, &str)> = Vec::new();
    for (tag, lines) in similar::utils::diff_slices(Algorithm::Myers, &old_lines, &new_lines) {
        for line in lines {
            records.push((tag, line));
        }
    }
    let context = 2usize;
    let mut keep = vec![false; records.len()];
    for (i, (tag, _)) in records.iter().enumerate() {
        if *tag == ChangeTag::Equal {
            continue;
        }
        let from = i.saturating_sub(context);
        let to = (i + context).min(records.len().saturating_sub(1));
        for k in keep.iter_mut().take(to + 1).skip(from) {
            *k = true;
        }
    }
    let mut out = String::new();
    let mut wrote_skip = false;
    for (i, (tag, line)) in records.iter().enumerate() {
        if !keep[i] {
            if !wrote_skip {
                out.push_str("...\n");
                wrote_skip = true;
            }
            continue;
        }
        out.push_str(match tag {
            ChangeTag::Delete => "- ",
            ChangeTag::Insert => "+ ",
            ChangeTag::Equal => "  ",
        });
        out.push_str(line);
        out.push('\n');
        wrote_skip = false;
    }
    out
}

/// Lines of `text` without the empty "line" after a final newline (kOps'
/// diff drops it too).
fn split_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_with_tabs_to_tab_stops() {
        let rows = vec![
            vec!["NAME".to_string(), "STATUS".into(), "MIN".into()],
            vec!["master-us-test-1a".into(), "Ready".into(), "1".into()],
            vec!["nodes".into(), "NeedsUpdate".into(), "2".into()],
        ];
        assert_eq!(
            tab_table(&rows),
            "NAME\t\t\tSTATUS\t\tMIN\n\
             master-us-test-1a\tReady\t\t1\n\
             nodes\t\t\tNeedsUpdate\t2\n"
        );
    }

    #[test]
    fn diffs_show_context_and_skips() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nd\nE\nf\ng\n";
        assert_eq!(format_diff(old, new), "...\n  c\n  d\n- e\n+ E\n  f\n  g\n");
        assert_eq!(format_diff("1.34.0", "1.34.1"), "- 1.34.0\n+ 1.34.1\n");
        assert_eq!(format_diff("", "x\n"), "+ x\n");
    }
}
