//! `kops version [--short] [--server]`: the client version (from
//! `KOPS_STANDIN_VERSION`, default 1.34.1) and, with `--server`, the version
//! recorded in the store's `kops-version.txt` by the last update.

use anyhow::{Result, bail};

use super::Context;
use crate::cli::VersionArgs;
use crate::ui;

pub fn run(ctx: &Context, args: &VersionArgs) -> Result<()> {
    if let Some(arg) = args.args.first() {
        bail!("unknown command {arg:?} for \"kops version\"");
    }
    let short = args.short.unwrap_or(false);
    let version = &ctx.version;
    if short {
        ui::out(&format!("{version}\n"));
    } else {
        ui::out(&format!("Client version: {version} (git-v{version})\n"));
    }
    if args.server.unwrap_or(false) {
        let server = match &ctx.cluster_name {
            None => "No cluster selected".to_string(),
            Some(cluster) => {
                crate::objects::check_cluster_name(cluster)?;
                let store = ctx.store()?;
                match store.read(&format!("{cluster}/kops-version.txt"))? {
                    Some(data) => String::from_utf8_lossy(&data).trim().to_string(),
                    None => "Unknown".to_string(),
                }
            }
        };
        if short {
            ui::out(&format!("{server}\n"));
        } else {
            ui::out(&format!("Last applied server version: {server}\n"));
        }
    }
    Ok(())
}
