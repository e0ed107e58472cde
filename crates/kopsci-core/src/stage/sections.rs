//! Where a stage's progress and kops' output go, and GitLab's collapsible
//! log sections around each cluster and step.
//!
//! GitLab folds everything between
//! `\e[0Ksection_start:<unix time>:<name>[collapsed=true]\r\e[0K<header>`
//! and `\e[0Ksection_end:<unix time>:<name>\r\e[0K` into one expandable line
//! of the job log (and shows the time spent in it). The markers are written
//! only when `GITLAB_CI=true`; elsewhere a section is just a header line.
//!
//! Sections of clusters running at the same time would interleave and break
//! each other, so with several clusters in flight each cluster's log is
//! buffered and written in one piece when the cluster is done; a single
//! cluster streams live.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::process::Echo;

/// How a stage writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStyle {
    /// Write GitLab section markers.
    pub gitlab: bool,
    /// Only errors and kops' own output (no step headers).
    pub quiet: bool,
}

impl LogStyle {
    /// GitLab markers when the job runs in GitLab CI (`GITLAB_CI=true`).
    pub fn from_env(quiet: bool) -> LogStyle {
        LogStyle {
            gitlab: std::env::var("GITLAB_CI").is_ok_and(|v| v == "true"),
            quiet,
        }
    }
}

/// The destination: kopsci's stderr (kops' output is echoed there too, so
/// stdout stays for results), or a buffer flushed there later.
enum Sink {
    Stderr,
    Buffer(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(buf)?;
                err.flush()?;
                Ok(buf.len())
            }
            Sink::Buffer(b) => {
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().flush(),
            Sink::Buffer(_) => Ok(()),
        }
    }
}

/// One cluster's log.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Sink>>,
    style: LogStyle,
    /// Prefix of section names: the cluster, made safe for GitLab.
    scope: String,
}

impl Log {
    /// A log written to stderr as it happens.
    pub fn live(style: LogStyle, scope: &str) -> Log {
        Log::with(Sink::Stderr, style, scope)
    }

    /// A log kept in memory until [`Log::flush`].
    pub fn buffered(style: LogStyle, scope: &str) -> Log {
        Log::with(Sink::Buffer(Vec::new()), style, scope)
    }

    fn with(sink: Sink, style: LogStyle, scope: &str) -> Log {
        Log {
            sink: Arc::new(Mutex::new(sink)),
            style,
            scope: section_name(scope),
        }
    }

    /// Where the kops runner echoes the child's output.
    pub fn echo(&self) -> Echo {
        let sink: Arc<Mutex<dyn Write + Send>> = self.sink.clone();
        Echo::To(sink)
    }

    /// Writes a line. Log failures (a closed stderr) never fail a stage.
    pub fn line(&self, text: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(sink, "{text}");
    }

    /// Writes a progress line, unless quiet.
    pub fn note(&self, text: &str) {
        if !self.style.quiet {
            self.line(text);
        }
    }

    /// Opens a section (`step` becomes part of its name); it closes when
    /// the returned guard is dropped.
    pub fn section(&self, step: &str, header: &str, collapsed: bool) -> Section {
        let name = format!("{}_{}", self.scope, section_name(step));
        if self.style.gitlab {
            let flag = if collapsed { "[collapsed=true]" } else { "" };
            let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = write!(sink, "{}", section_start(unix_now(), &name, flag, header));
        } else if !self.style.quiet {
            self.line(&format!("==> {header}"));
        }
        Section {
            log: self.clone(),
            name,
        }
    }

    /// Writes a buffered log to stderr in one piece (a live log is already
    /// there). Holding stderr's lock keeps other clusters' logs out of it.
    pub fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Sink::Buffer(buf) = &mut *sink {
            let mut err = io::stderr().lock();
            let _ = err.write_all(buf);
            let _ = err.flush();
            buf.clear();
        }
    }
}

/// An open section; dropping it writes the end marker.
pub struct Section {
    log: Log,
    name: String,
}

impl Drop for Section {
    fn drop(&mut self) {
        if self.log.style.gitlab {
            let mut sink = self.log.sink.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = write!(sink, "{}", section_end(unix_now(), &self.name));
        }
    }
}

/// GitLab's start marker. `flag` is `""` or `[collapsed=true]`.
pub fn section_start(time: u64, name: &str, flag: &str, header: &str) -> String {
    format!("\x1b[0Ksection_start:{time}:{name}{flag}\r\x1b[0K{header}\n")
}

/// GitLab's end marker.
pub fn section_end(time: u64, name: &str) -> String {
    format!("\x1b[0Ksection_end:{time}:{name}\r\x1b[0K\n")
}

/// A section name GitLab accepts: letters, digits, `_`, `.` and `-`.
pub fn section_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &Log) -> String {
        match &*log.sink.lock().unwrap() {
            Sink::Buffer(b) => String::from_utf8_lossy(b).into_owned(),
            Sink::Stderr => String::new(),
        }
    }

    #[test]
    fn gitlab_sections_have_the_documented_markers() {
        let style = LogStyle {
            gitlab: true,
            quiet: false,
        };
        let log = Log::buffered(style, "dev-a.k8s.example.com");
        {
            let _s = log.section("kops update", "dev-a: kops update cluster", true);
            log.line("Will create resources:");
        }
        let out = text(&log);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out:?}");
        let start = lines[0];
        assert!(start.starts_with("\x1b[0Ksection_start:"), "{start:?}");
        assert!(
            start.ends_with(
                ":dev-a.k8s.example.com_kops_update[collapsed=true]\r\x1b[0Kdev-a: kops update cluster"
            ),
            "{start:?}"
        );
        let ts: &str = start
            .trim_start_matches("\x1b[0Ksection_start:")
            .split(':')
            .next()
            .unwrap();
        assert!(ts.parse::<u64>().unwrap() > 1_600_000_000);
        assert_eq!(lines[1], "Will create resources:");
        assert!(lines[2].starts_with("\x1b[0Ksection_end:"));
        assert!(lines[2].ends_with(":dev-a.k8s.example.com_kops_update\r\x1b[0K"));
    }

    #[test]
    fn outside_gitlab_a_section_is_a_header_line_and_quiet_drops_it() {
        let log = Log::buffered(LogStyle::default(), "c");
        drop(log.section("snapshot", "c: snapshot", false));
        assert_eq!(text(&log), "==> c: snapshot\n");
        let quiet = Log::buffered(
            LogStyle {
                gitlab: false,
                quiet: true,
            },
            "c",
        );
        drop(quiet.section("snapshot", "c: snapshot", false));
        quiet.note("progress");
        quiet.line("kept");
        assert_eq!(text(&quiet), "kept\n");
    }

    #[test]
    fn section_names_are_restricted_to_what_gitlab_accepts() {
        assert_eq!(section_name("A b/c:d.e-f_g"), "a_b_c_d.e-f_g");
    }
}
