//! kopsci's exit codes — the contract CI jobs script against.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success; nothing pending |
//! | 1 | error |
//! | 2 | usage error (bad flags, missing inputs); `dryrun`/`roll --detailed-exitcode`: changes pending |
//! | 3 | differences found: `render --check` (manifests out of date), `snapshot verify` (live store changed) |
//! | 128+n | interrupted by signal n |

use std::process::ExitCode;

/// A documented exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Error,
    Usage,
    Differs,
    /// `--detailed-exitcode`: the dry run (or roll preview) found changes.
    /// Shares the usage code, as `terraform plan -detailed-exitcode` does.
    Pending,
    /// Stopped by signal n; everything started was cleaned up first.
    Interrupted(i32),
}

impl Exit {
    /// Usage errors from the library get the usage code; everything else is 1.
    pub fn for_error(err: &anyhow::Error) -> Exit {
        match err.downcast_ref::<kopsci_core::Error>() {
            Some(kopsci_core::Error::Interrupted { signal, .. }) => Exit::Interrupted(*signal),
            Some(e) if e.is_usage() => Exit::Usage,
            _ => Exit::Error,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::Differs => 3,
            Exit::Pending => 2,
            Exit::Interrupted(signal) => u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(255),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
