//! Recognising kOps' log lines (klog format) so the output parsers can skip
//! them wherever they appear:
//! `I1121 12:00:00.000000    1234 executor.go:111] Tasks: 0 done / 52 total`.

/// Whether `line` is a klog header line: `Lmmdd hh:mm:ss.uuuuuu PID file:line] …`
/// with `L` one of `I`, `W`, `E`, `F`. Leading whitespace is tolerated.
pub fn is_klog_line(line: &str) -> bool {
    let b = line.trim_start().as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    // "I1121 12:00:00.000000" is 21 bytes, then the thread id and source.
    if b.len() < 22 || !matches!(b[0], b'I' | b'W' | b'E' | b'F') {
        return false;
    }
    let header_ok = digits(&b[1..5])
        && b[5] == b' '
        && digits(&b[6..8])
        && b[8] == b':'
        && digits(&b[9..11])
        && b[11] == b':'
        && digits(&b[12..14])
        && b[14] == b'.';
    if !header_ok {
        return false;
    }
    // Microseconds, spaces, thread id, space, `file.go:123]`.
    let rest = &line.trim_start()[15..];
    let mut words = rest.split_whitespace();
    let micros = words.next().unwrap_or_default();
    let pid = words.next().unwrap_or_default();
    let source = words.next().unwrap_or_default();
    digits(micros.as_bytes())
        && digits(pid.as_bytes())
        && source.ends_with(']')
        && source.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_klog_lines_only() {
        for yes in [
            "I1121 12:00:00.000000    1234 executor.go:111] Tasks: 0 done / 52 total; 24 can run",
            "W0102 03:04:05.678901 99 update_cluster.go:320] Exported kubeconfig",
            "E1121 12:00:00.1 1 x.go:1] boom",
            "F1121 12:00:00.000000 7 main.go:2]",
            "  I1121 12:00:00.000000    1234 executor.go:111] indented",
        ] {
            assert!(is_klog_line(yes), "{yes}");
        }
        for no in [
            "",
            "Will create resources:",
            "  Instance/master-us-test-1a",
            "I1121 is not a log line at all, no",
            "Information: 1234 12:00",
            "NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES",
            "I1121 12:00:00.000000 abc executor.go:111] pid not numeric",
            "Ié121 12:00:00.000000 1 x.go:1] multibyte",
        ] {
            assert!(!is_klog_line(no), "{no}");
        }
    }
}
