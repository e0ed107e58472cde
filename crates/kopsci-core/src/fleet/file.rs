//! The fleet file's YAML schema, exactly as written: serde structs with
//! source locations, checked and resolved into a [`super::Fleet`] by
//! [`super::parse`]. Unknown keys are errors.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::aws::settings::AwsFile;

/// The keys every level (fleet, environment, cluster) may set about how
/// changes are applied, borrowed from that level.
pub(super) struct LevelKeys<'a> {
    pub apply: &'a Option<Spanned<ApplyFile>>,
    pub kops: Option<&'a KopsFile>,
    pub prune_instance_groups: Option<bool>,
    pub validate: Option<bool>,
    pub validation_timeout: &'a Option<Spanned<String>>,
    pub drain_timeout: &'a Option<Spanned<String>>,
}

/// A level of the fleet file: its own keys, then the keys about applying
/// changes every level shares. serde cannot `flatten` them into a struct
/// that denies unknown keys, so they are spelled out once here instead.
macro_rules! level_file {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            #[serde(default)]
            pub kops: Option<KopsFile>,
            #[serde(default)]
            pub apply: Option<Spanned<ApplyFile>>,
            #[serde(default)]
            pub prune_instance_groups: Option<bool>,
            #[serde(default)]
            pub validate: Option<bool>,
            #[serde(default)]
            pub validation_timeout: Option<Spanned<String>>,
            #[serde(default)]
            pub drain_timeout: Option<Spanned<String>>,
        }

        impl $name {
            pub fn keys(&self) -> LevelKeys<'_> {
                LevelKeys {
                    apply: &self.apply,
                    kops: self.kops.as_ref(),
                    prune_instance_groups: self.prune_instance_groups,
                    validate: self.validate,
                    validation_timeout: &self.validation_timeout,
                    drain_timeout: &self.drain_timeout,
                }
            }
        }
    };
}

level_file! {
    #[derive(Debug, Deserialize)]
    struct FleetFile {
        #[serde(default)]
        state: Option<Spanned<String>>,
        #[serde(default, deserialize_with = "null_as_empty")]
        templates: Vec<String>,
        #[serde(default, deserialize_with = "null_as_empty")]
        snippets: Vec<String>,
        #[serde(default, deserialize_with = "null_as_empty")]
        values: Vec<Spanned<ValuesEntryFile>>,
        #[serde(default)]
        manifests: Option<String>,
        /// Globs of repository paths that never affect a cluster.
        #[serde(default, deserialize_with = "null_as_empty")]
        ignore: Vec<Spanned<String>>,
        /// `dev:` with nothing under it is a valid, empty environment.
        #[serde(default)]
        environments: IndexMap<Spanned<String>, Option<EnvironmentFile>>,
        #[serde(default, deserialize_with = "null_as_empty")]
        clusters: Vec<ClusterFile>,
        #[serde(default)]
        aws: Option<AwsFile>,
    }
}

level_file! {
    #[derive(Debug, Default, Deserialize)]
    struct EnvironmentFile {
        #[serde(default, deserialize_with = "null_as_empty")]
        values: Vec<Spanned<ValuesEntryFile>>,
        #[serde(default, deserialize_with = "null_as_empty")]
        needs: Vec<Spanned<String>>,
        #[serde(default)]
        state: Option<Spanned<String>>,
        #[serde(default)]
        aws: Option<AwsFile>,
        #[serde(default)]
        auto_apply: Option<bool>,
        #[serde(default)]
        auto_roll: Option<bool>,
    }
}

level_file! {
    #[derive(Debug, Deserialize)]
    struct ClusterFile {
        name: Spanned<String>,
        environment: Spanned<String>,
        #[serde(default, deserialize_with = "null_as_empty")]
        values: Vec<Spanned<ValuesEntryFile>>,
        #[serde(default)]
        state: Option<Spanned<String>>,
        #[serde(default)]
        aws: Option<AwsFile>,
        /// A reviewed deletion: the cluster is to be deleted, not applied.
        #[serde(default)]
        absent: bool,
    }
}

/// `kops:` — fleet level: the version requirement and the API server;
/// environment and cluster level: the API server only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KopsFile {
    #[serde(default)]
    pub version: Option<Spanned<String>>,
    #[serde(default)]
    pub api_server: Option<Spanned<String>>,
}

/// One entry of a `values:` list: a YAML file or directory, or
/// `{terraform_output: FILE}`.
#[derive(Debug, Clone)]
pub(super) enum ValuesEntryFile {
    Path(String),
    TerraformOutput(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerraformEntryFile {
    terraform_output: String,
}

impl<'de> Deserialize<'de> for ValuesEntryFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ValuesEntryFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a values file or directory, or `{terraform_output: FILE}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ValuesEntryFile::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let entry = TerraformEntryFile::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(ValuesEntryFile::TerraformOutput(entry.terraform_output))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `apply:` — `reconcile`, `update-roll`, or
/// `{strategy: reconcile|update-roll, timeout: 3h}`.
#[derive(Debug, Clone, Default)]
pub(super) struct ApplyFile {
    pub strategy: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBlockFile {
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

impl<'de> Deserialize<'de> for ApplyFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ApplyFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`reconcile`, `update-roll` or `{strategy: …, timeout: …}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ApplyFile {
                    strategy: Some(v.to_string()),
                    timeout: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let block =
                    ApplyBlockFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ApplyFile {
                    strategy: block.strategy,
                    timeout: block.timeout,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `key:` with nothing after it reads as null; for lists that means empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
