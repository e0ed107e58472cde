//! How a cluster's changes are applied — strategy, job timeout, pruning,
//! automation, validation, the kOps API server — as resolved from the
//! fleet, environment and cluster levels of the fleet file (the most
//! specific level wins, key by key).

use std::fmt;
use std::time::Duration;

/// How the default branch applies a reviewed change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyStrategy {
    /// `kopsci apply`: `kops reconcile cluster --yes` (kOps 1.31+), which
    /// updates and rolls the control plane before the nodes, as kOps'
    /// upgrade guide requires from Kubernetes 1.31.
    #[default]
    Reconcile,
    /// `kopsci update` then `kopsci roll --yes`, two manual jobs.
    UpdateRoll,
}

impl ApplyStrategy {
    pub const NAMES: &'static [&'static str] = &["reconcile", "update-roll"];

    pub fn parse(name: &str) -> Option<ApplyStrategy> {
        match name {
            "reconcile" => Some(ApplyStrategy::Reconcile),
            "update-roll" => Some(ApplyStrategy::UpdateRoll),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyStrategy::Reconcile => "reconcile",
            ApplyStrategy::UpdateRoll => "update-roll",
        }
    }
}

impl fmt::Display for ApplyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duration as kOps' flags and GitLab's `timeout:` take it. Whole seconds:
/// neither needs less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout(Duration);

impl Timeout {
    pub const fn from_secs(secs: u64) -> Timeout {
        Timeout(Duration::from_secs(secs))
    }

    /// Parses `90s`, `15m`, `1h30m`, `3h` (Go's duration syntax, which
    /// kOps' flags use) and `1h 30m` (GitLab's). Zero is refused: every
    /// timeout kopsci passes on must be able to pass.
    pub fn parse(text: &str) -> Result<Timeout, String> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("expected a duration such as `15m`, `1h30m` or `3h`, got `{text}` ({e})")
        })?;
        let secs = duration.as_secs();
        if secs == 0 {
            return Err(format!(
                "expected a duration of at least one second, got `{text}`"
            ));
        }
        Ok(Timeout(Duration::from_secs(secs)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Go's notation (`1h30m0s` reads as `1h30m`): what kops flags take.
    pub fn go(self) -> String {
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
        out
    }

    /// GitLab's notation for `timeout:` (`3h 30m`).
    pub fn gitlab(self) -> String {
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let mut parts = Vec::new();
        if h > 0 {
            parts.push(format!("{h}h"));
        }
        if m > 0 {
            parts.push(format!("{m}m"));
        }
        if s > 0 || parts.is_empty() {
            parts.push(format!("{s}s"));
        }
        parts.join(" ")
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.go())
    }
}

/// A cluster's resolved apply settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySettings {
    pub strategy: ApplyStrategy,
    /// GitLab `timeout:` of the apply and roll jobs (default 3h).
    pub timeout: Timeout,
    /// Delete instance groups the manifest dropped (default false).
    pub prune_instance_groups: bool,
    /// The default-branch apply (or update) job runs without a click.
    pub auto_apply: bool,
    /// With `update-roll`: the roll job runs without a click too.
    pub auto_roll: bool,
    /// Run `kops validate cluster` after apply and roll (default true).
    pub validate: bool,
    /// `kops validate cluster --wait` and rolling updates'
    /// `--validation-timeout`; kOps' default (15m) when unset.
    pub validation_timeout: Option<Timeout>,
    /// `--drain-timeout` for rolling updates; kOps' default when unset.
    pub drain_timeout: Option<Timeout>,
    /// `--api-server` for kops commands that document it (private APIs).
    pub api_server: Option<String>,
}

/// Default GitLab timeout of apply and roll jobs: long rolls of big groups
/// take hours.
pub const DEFAULT_APPLY_TIMEOUT: Timeout = Timeout::from_secs(3 * 3600);
/// Default `kops validate cluster --wait`: kOps' own default validation
/// timeout for rolling updates.
pub const DEFAULT_VALIDATION_TIMEOUT: Timeout = Timeout::from_secs(15 * 60);

impl Default for ApplySettings {
    fn default() -> ApplySettings {
        ApplySettings {
            strategy: ApplyStrategy::default(),
            timeout: DEFAULT_APPLY_TIMEOUT,
            prune_instance_groups: false,
            auto_apply: false,
            auto_roll: false,
            validate: true,
            validation_timeout: None,
            drain_timeout: None,
            api_server: None,
        }
    }
}

/// One level's settings as written (fleet, environment or cluster): `None`
/// where the level says nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct ApplyLayer {
    pub strategy: Option<ApplyStrategy>,
    pub timeout: Option<Timeout>,
    pub prune_instance_groups: Option<bool>,
    pub auto_apply: Option<bool>,
    pub auto_roll: Option<bool>,
    pub validate: Option<bool>,
    pub validation_timeout: Option<Timeout>,
    pub drain_timeout: Option<Timeout>,
    pub api_server: Option<String>,
}

impl ApplySettings {
    /// How long `kops validate cluster --wait` waits.
    pub fn validation_wait(&self) -> Timeout {
        self.validation_timeout
            .unwrap_or(DEFAULT_VALIDATION_TIMEOUT)
    }

    /// `self` with every key `layer` sets replaced by `layer`'s.
    pub(super) fn overlay(&self, layer: &ApplyLayer) -> ApplySettings {
        ApplySettings {
            strategy: layer.strategy.unwrap_or(self.strategy),
            timeout: layer.timeout.unwrap_or(self.timeout),
            prune_instance_groups: layer
                .prune_instance_groups
                .unwrap_or(self.prune_instance_groups),
            auto_apply: layer.auto_apply.unwrap_or(self.auto_apply),
            auto_roll: layer.auto_roll.unwrap_or(self.auto_roll),
            validate: layer.validate.unwrap_or(self.validate),
            validation_timeout: layer.validation_timeout.or(self.validation_timeout),
            drain_timeout: layer.drain_timeout.or(self.drain_timeout),
            api_server: layer.api_server.clone().or_else(|| self.api_server.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_go_and_gitlab_notation_and_write_both() {
        for (text, secs, go, gitlab) in [
            ("15m", 900, "15m", "15m"),
            ("1h30m", 5400, "1h30m", "1h 30m"),
            ("1h 30m", 5400, "1h30m", "1h 30m"),
            ("3h", 10800, "3h", "3h"),
            ("90s", 90, "1m30s", "1m 30s"),
        ] {
            let t = Timeout::parse(text).unwrap();
            assert_eq!(t.as_secs(), secs, "{text}");
            assert_eq!(t.go(), go, "{text}");
            assert_eq!(t.gitlab(), gitlab, "{text}");
        }
        for bad in ["", "soon", "0s", "-5m", "15"] {
            assert!(Timeout::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlay_replaces_only_what_a_level_sets() {
        let base = ApplySettings::default();
        let env = ApplyLayer {
            strategy: Some(ApplyStrategy::UpdateRoll),
            auto_apply: Some(true),
            ..ApplyLayer::default()
        };
        let cluster = ApplyLayer {
            prune_instance_groups: Some(true),
            api_server: Some("https://api.internal".into()),
            ..ApplyLayer::default()
        };
        let merged = base.overlay(&env).overlay(&cluster);
        assert_eq!(merged.strategy, ApplyStrategy::UpdateRoll);
        assert!(merged.auto_apply && merged.prune_instance_groups && merged.validate);
        assert_eq!(merged.api_server.as_deref(), Some("https://api.internal"));
        assert_eq!(merged.timeout, DEFAULT_APPLY_TIMEOUT);
    }
}
