//! Which objects of a cluster a snapshot copies: etcd backup data is left
//! out by default (kOps dry runs never read it, and it is most of a store's
//! bytes), `--include` / `--exclude` globs refine that.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};

/// The filter settings, as given on the command line and kept in the
/// snapshot record so `verify` selects exactly the same objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// Keep etcd backup data too.
    #[serde(default)]
    pub with_backups: bool,
    /// Globs of keys to keep even when the backup rule would skip them.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of keys to skip; wins over everything else.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A compiled [`FilterSpec`]. Keys are relative to the cluster directory.
#[derive(Debug, Clone)]
pub struct Filter {
    with_backups: bool,
    include: GlobSet,
    exclude: GlobSet,
}

impl Filter {
    pub fn new(spec: &FilterSpec) -> Result<Filter> {
        Ok(Filter {
            with_backups: spec.with_backups,
            include: compile("--include", &spec.include)?,
            exclude: compile("--exclude", &spec.exclude)?,
        })
    }

    /// Whether the object at `key` belongs in the snapshot.
    pub fn keeps(&self, key: &str) -> bool {
        if self.exclude.is_match(key) {
            return false;
        }
        if self.with_backups || !is_etcd_backup_data(key) {
            return true;
        }
        self.include.is_match(key)
    }
}

/// `backups/etcd/<name>/…` except `backups/etcd/<name>/control/…`: etcd-manager
/// keeps the cluster spec it needs in `control/`; everything else there is
/// backup archives.
pub fn is_etcd_backup_data(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("backups/etcd/") else {
        return false;
    };
    let Some((_name, below)) = rest.split_once('/') else {
        return false;
    };
    !(below == "control" || below.starts_with("control/"))
}

fn compile(flag: &str, globs: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(build(flag, glob)?);
    }
    set.build()
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// `*` stays within one path segment, `**` crosses them, as in `.gitignore`.
fn build(flag: &str, glob: &str) -> Result<Glob> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::Usage(format!("{flag} `{glob}`: {}", e.kind())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(with_backups: bool, include: &[&str], exclude: &[&str]) -> Filter {
        Filter::new(&FilterSpec {
            with_backups,
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    const BACKUP: &str = "backups/etcd/main/2024-05-01T10:00:00Z-000001/etcd.backup.gz";
    const CONTROL: &str = "backups/etcd/main/control/etcd-cluster-spec";

    #[test]
    fn backup_data_is_recognised() {
        assert!(is_etcd_backup_data(BACKUP));
        assert!(is_etcd_backup_data(
            "backups/etcd/events/2024-05-01T10:00:00Z-000001/_etcd_backup.meta"
        ));
        assert!(!is_etcd_backup_data(CONTROL));
        assert!(!is_etcd_backup_data("backups/etcd/main/control"));
        assert!(!is_etcd_backup_data("backups/etcd/main"));
        assert!(!is_etcd_backup_data("backups/other/x"));
        assert!(!is_etcd_backup_data("config"));
        assert!(!is_etcd_backup_data("pki/backups/etcd/main/x"));
    }

    #[test]
    fn default_skips_backup_data_but_keeps_control() {
        let f = filter(false, &[], &[]);
        assert!(f.keeps("config"));
        assert!(f.keeps(CONTROL));
        assert!(!f.keeps(BACKUP));
    }

    #[test]
    fn with_backups_keeps_everything() {
        let f = filter(true, &[], &[]);
        assert!(f.keeps(BACKUP) && f.keeps(CONTROL) && f.keeps("config"));
    }

    #[test]
    fn include_brings_back_backups_and_exclude_wins() {
        let f = filter(
            false,
            &["backups/etcd/main/2024-05-*/**"],
            &["**/*.gz", "addons/*"],
        );
        assert!(f.keeps("backups/etcd/main/2024-05-01T10:00:00Z-000001/_etcd_backup.meta"));
        assert!(!f.keeps(BACKUP), "exclude wins over include");
        assert!(!f.keeps("backups/etcd/events/2024-05-01/_etcd_backup.meta"));
        assert!(!f.keeps("addons/bootstrap-channel.yaml"));
        // `*` does not cross `/`.
        assert!(f.keeps("addons/coredns.addons.k8s.io/k8s-1.12.yaml"));
        assert!(f.keeps("config"));
    }

    #[test]
    fn bad_globs_are_usage_errors() {
        let err = Filter::new(&FilterSpec {
            include: vec!["a[".into()],
            ..FilterSpec::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, Error::Usage(ref m) if m.contains("--include `a[`")),
            "{err}"
        );
    }
}
