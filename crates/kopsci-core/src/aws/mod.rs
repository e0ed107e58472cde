//! AWS for kopsci: the fleet's `aws:` settings, the identity a cluster's
//! stages run as (inherited, or an assumed role), and STS.

pub mod identity;
pub mod settings;
pub mod sts;

pub use identity::{AwsCredentials, AwsIdentity, ChildEnv, Secret};
pub use settings::{AwsFile, AwsSettings, ExternalId};
pub use sts::{StsClientSettings, resolve_identity, s3_for};
