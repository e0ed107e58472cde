//! Reading `kops validate cluster -o json`: with `--wait`, kOps prints one
//! JSON result per attempt, back to back with no separator; the last one
//! is the verdict. A failed validation also exits non-zero — either is a
//! failure, and an exit code that disagrees with the JSON wins.

use serde::{Deserialize, Serialize};

/// One problem kOps found (`{"type","name","message"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationFailure {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub message: String,
}

/// One node as kOps saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationNode {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Deserialize)]
struct Attempt {
    #[serde(default)]
    failures: Vec<ValidationFailure>,
    #[serde(default)]
    nodes: Vec<ValidationNode>,
}

/// The verdict of `kops validate cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub passed: bool,
    /// Results kOps printed (one per attempt with `--wait`).
    pub attempts: usize,
    /// The last attempt's failures.
    pub failures: Vec<ValidationFailure>,
    /// The last attempt's nodes.
    pub nodes: Vec<ValidationNode>,
    /// Output that was not JSON, kept for the report when nothing parsed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unparsed: String,
}

/// Reads kops' stdout; `exit_ok` is whether kops exited 0.
pub fn parse_validate_output(stdout: &str, exit_ok: bool) -> Validation {
    let mut last: Option<Attempt> = None;
    let mut attempts = 0;
    let mut stream = serde_json::Deserializer::from_str(stdout).into_iter::<Attempt>();
    for attempt in stream.by_ref() {
        match attempt {
            Ok(a) => {
                attempts += 1;
                last = Some(a);
            }
            // Anything after the last readable result (a klog line, a
            // truncated write) is kept as text below.
            Err(_) => break,
        }
    }
    let rest = stdout[stream.byte_offset()..].trim();
    match last {
        Some(attempt) => Validation {
            passed: exit_ok && attempt.failures.is_empty(),
            attempts,
            failures: attempt.failures,
            nodes: attempt.nodes,
            unparsed: rest.to_string(),
        },
        None => Validation {
            passed: false,
            attempts: 0,
            failures: Vec::new(),
            nodes: Vec::new(),
            unparsed: stdout.trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = r#"{"nodes":[{"name":"i-1","zone":"us-test-1a","role":"control-plane","hostname":"i-1","status":"True"}]}"#;
    const FAIL: &str = r#"{"failures":[{"type":"Machine","name":"i-2","message":"machine \"i-2\" has not yet joined cluster"}],"nodes":[{"name":"i-1","zone":"us-test-1a","role":"control-plane","hostname":"i-1","status":"True"}]}"#;

    #[test]
    fn the_last_of_several_results_is_the_verdict() {
        let v = parse_validate_output(&format!("{FAIL}{FAIL}{PASS}"), true);
        assert!(v.passed);
        assert_eq!(v.attempts, 3);
        assert!(v.failures.is_empty());
        assert_eq!(v.nodes[0].role, "control-plane");

        let v = parse_validate_output(&format!("{PASS}\n{FAIL}\n"), false);
        assert!(!v.passed);
        assert_eq!(v.failures[0].kind, "Machine");
        assert!(v.failures[0].message.contains("has not yet joined"));
    }

    #[test]
    fn a_non_zero_exit_fails_whatever_the_json_says_and_garbage_is_kept() {
        assert!(!parse_validate_output(PASS, false).passed);
        let v = parse_validate_output("Error: cannot reach the API\n", false);
        assert!(!v.passed && v.attempts == 0);
        assert_eq!(v.unparsed, "Error: cannot reach the API");
        let v = parse_validate_output(&format!("{PASS}\nI1203 trailing klog\n"), true);
        assert!(v.passed);
        assert_eq!(v.unparsed, "I1203 trailing klog");
        // Empty output with exit 0 proves nothing.
        assert!(!parse_validate_output("", true).passed);
    }
}
