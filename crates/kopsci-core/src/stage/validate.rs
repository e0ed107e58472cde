//! The validation gate after `apply` and `roll --yes`: `kops validate
//! cluster --wait <timeout> -o json`, its verdict in the report, and a
//! failed validation failing the job.

use crate::errors::{Error, Result};
use crate::kops::parse_validate_output;
use crate::stage::report::KOPS_VALIDATE_FILE;
use crate::stage::run::{ClusterRun, Step};

/// Validates the cluster unless the fleet says `validate: false`.
pub(crate) fn validate_cluster(run: &mut ClusterRun) -> Result<()> {
    if !run.cluster.apply.validate {
        run.warn("validation skipped: `validate: false` in the fleet".into());
        return Ok(());
    }
    let name = run.name();
    let wait = run.cluster.apply.validation_wait().go();
    let inv = run.kops()?.validate(name, &run.live_state_arg(), &wait);
    let header = format!("{name}: kops validate cluster --wait {wait}");
    let outcome = run.run_kops_unchecked(Step::KopsValidate, &header, &inv, false)?;
    run.write(
        KOPS_VALIDATE_FILE,
        &format!(
            "$ {}\n{}{}",
            inv.command_line(),
            outcome.stdout,
            outcome.stderr
        ),
    )?;
    let validation = parse_validate_output(&outcome.stdout, outcome.success());
    let passed = validation.passed;
    let first = validation
        .failures
        .first()
        .map(|f| format!("{} {}: {}", f.kind, f.name, f.message))
        .or_else(|| outcome.stderr_tail(1).pop())
        .unwrap_or_else(|| "no result".to_string());
    let count = validation.failures.len();
    run.report.validation = Some(validation);
    if passed {
        run.log.note(&format!("{name}: cluster validated"));
        return Ok(());
    }
    Err(Error::ValidationFailed {
        cluster: name.to_string(),
        wait,
        failures: count,
        first,
    })
}
