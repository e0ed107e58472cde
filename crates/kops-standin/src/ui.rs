//! Terminal output: stdout for what kOps prints on stdout, stderr for its
//! klog lines and errors. Writes never panic (a closed pipe is not the
//! stand-in's business), and the clock helpers format times the way kOps and
//! klog do without pulling in a date crate.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `text` to stdout as is.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes `text` to stderr as is.
pub fn err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// One klog line on stderr (`I1101 12:00:00.000000   4242 file.go:123] msg`),
/// the way kOps logs progress; `severity` is `I`, `W` or `E`.
pub fn klog(severity: char, source: &str, message: &str) {
    let (date, micros) = now_parts();
    let line = format!(
        "{severity}{:02}{:02} {:02}:{:02}:{:02}.{micros:06} {:>7} {source}] {message}\n",
        date.month,
        date.day,
        date.hour,
        date.minute,
        date.second,
        std::process::id()
    );
    err(&line);
}

/// The current UTC time as RFC 3339 with second precision, the form of
/// `metadata.creationTimestamp`.
pub fn now_rfc3339() -> String {
    rfc3339_after(0)
}

/// The UTC time `secs` seconds from now, as RFC 3339.
pub fn rfc3339_after(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = i64::try_from(now.as_secs())
        .unwrap_or(0)
        .saturating_add(secs)
        .min(253_402_300_799); // 9999-12-31T23:59:59Z
    let d = civil_from_unix(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    )
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn now_parts() -> (Civil, u32) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    (civil_from_unix(secs), since.subsec_micros())
}

/// Converts Unix seconds to a UTC calendar time (Howard Hinnant's
/// days-to-civil algorithm).
fn civil_from_unix(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: month as u32,
        day: day as u32,
        hour: (rem / 3_600) as u32,
        minute: (rem % 3_600 / 60) as u32,
        second: (rem % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        let c = civil_from_unix(1_481_409_747); // 2016-12-10T22:42:27Z
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2016, 12, 10, 22, 42, 27)
        );
        let c = civil_from_unix(951_782_400); // 2000-02-29T00:00:00Z
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
    }

    #[test]
    fn timestamps_look_like_kops_ones() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z'));
    }
}
