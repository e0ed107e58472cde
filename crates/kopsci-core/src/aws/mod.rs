//! AWS for kopsci: the fleet's `aws:` settings, the identity a cluster's
//! stages run as (inherited, or an assumed role), and STS.

pub mod settings;

pub use settings::{AwsFile, AwsSettings, ExternalId};
