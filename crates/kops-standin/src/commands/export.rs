//! `kops export kubeconfig [CLUSTER | --all]` (alias `kubecfg`): writes a
//! kubeconfig for the cluster the way kOps' `BuildKubecfg` +
//! `clientcmd.ModifyConfig` do — merged into the file (`--kubeconfig`, else
//! the first `KUBECONFIG` entry, else `$HOME/.kube/config`), entries
//! replaced by name, `current-context` set, mode 0600 — with a server URL
//! and CA derived from the state store and fake credentials: `--admin[=D]`
//! (a placeholder client certificate valid for D, default 18h), `--user U`
//! (an existing user), `--auth-plugin` (kOps' exec plugin). Also the
//! kubeconfig reading `validate cluster --kubeconfig` needs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};

use super::Context;
use crate::cli::ExportKubeconfigArgs;
use crate::objects::{self, spec_str};
use crate::store::Store;
use crate::ui;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn run(ctx: &Context, args: &ExportKubeconfigArgs) -> Result<()> {
    let all = args.all.unwrap_or(false);
    let clusters = if all {
        if !args.args.is_empty() {
            bail!("cannot use both --all flag and positional arguments");
        }
        let store = ctx.store()?;
        let mut names = Vec::new();
        for dir in store.top_level_dirs()? {
            if objects::check_cluster_name(&dir).is_ok()
                && objects::read_cluster(store.as_ref(), &dir)?.is_some()
            {
                names.push(dir);
            }
        }
        names
    } else {
        vec![ctx.cluster_from_args(&args.args)?]
    };
    if args.admin.is_some() && args.user.is_some() {
        bail!("cannot use both --admin and --user");
    }
    let path = match &args.kubeconfig {
        Some(p) => PathBuf::from(p),
        None => default_path()?,
    };
    let store = ctx.store()?;
    for name in &clusters {
        let cluster = objects::require_cluster(store.as_ref(), name)?;
        let server = server(
            &cluster,
            name,
            args.internal.unwrap_or(false),
            args.api_server.as_deref(),
        );
        let ca = ca_data(store.as_ref(), name)?;
        let auth = if let Some(lifetime) = args.admin {
            Auth::Admin(lifetime)
        } else if let Some(user) = &args.user {
            Auth::Existing(user.clone())
        } else if args.auth_plugin.unwrap_or(false) {
            Auth::Plugin(store.url().to_string())
        } else {
            Auth::None
        };
        write(&path, name, &server, &ca, &auth)?;
        ui::out(&format!("kOps has set your kubectl context to {name}\n"));
        if matches!(auth, Auth::None) {
            ui::klog(
                'W',
                "export_kubeconfig.go:150",
                "Exported kubeconfig with no user authentication; use --admin, --user or --auth-plugin flags with `kops export kubeconfig`",
            );
        }
    }
    Ok(())
}

/// The user part of the context.
enum Auth {
    /// A client certificate valid for this many nanoseconds.
    Admin(i128),
    /// A user already in the kubeconfig file.
    Existing(String),
    /// kOps' exec plugin, for this state store.
    Plugin(String),
    None,
}

/// `https://<api host>`: `--api-server`, else the internal name
/// (`api.internal.C`) with `--internal`, else `spec.api.publicName` /
/// `spec.masterPublicName`, else `api.C`.
pub fn server(cluster: &Value, name: &str, internal: bool, api_server: Option<&str>) -> String {
    if let Some(s) = api_server {
        return s.to_string();
    }
    format!("https://{}", api_host(cluster, name, internal))
}

pub fn api_host(cluster: &Value, name: &str, internal: bool) -> String {
    if internal {
        return format!("api.internal.{name}");
    }
    spec_str(cluster, "api/publicName")
        .or_else(|| spec_str(cluster, "masterPublicName"))
        .map(str::to_string)
        .unwrap_or_else(|| format!("api.{name}"))
}

/// The cluster CA's certificate (the keyset's public material, already
/// base64 of a PEM), as kOps puts it in `certificate-authority-data`.
fn ca_data(store: &dyn Store, cluster: &str) -> Result<String> {
    let key = format!("{cluster}/pki/private/kubernetes-ca/keyset.yaml");
    let Some(data) = store.read(&key)? else {
        bail!("cannot find CA certificate");
    };
    let keyset = objects::parse_stored(&data, &key)?;
    let primary = spec_str(&keyset, "primaryID").unwrap_or("");
    let keys = objects::spec_value(&keyset, "keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    keys.iter()
        .find(|k| objects::scalar_string(k.get("id").unwrap_or(&Value::Null)) == primary)
        .or(keys.first())
        .and_then(|k| k.get("publicMaterial"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("cannot find CA certificate"))
}

/// Where kubectl (and kOps) read and write the kubeconfig by default.
pub fn default_path() -> Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty())
        && let Some(first) = std::env::split_paths(&list).next()
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("cannot find the kubeconfig: neither KUBECONFIG nor HOME is set"))?;
    Ok(Path::new(&home).join(".kube").join("config"))
}

/// The kubeconfig at `path`, or `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("error reading {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(Some(json!({})));
    }
    let value: Value = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow!(
            "error loading config file {:?}: {e}",
            path.display().to_string()
        )
    })?;
    Ok(Some(value))
}

/// Whether the kubeconfig has a context named `name`.
pub fn has_context(config: &Value, name: &str) -> bool {
    config
        .get("contexts")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
        })
}

/// Replaces (or adds) the entry named `name` of the list `field`, keeping
/// the list sorted by name as client-go writes it.
fn upsert(config: &mut Value, field: &str, name: &str, entry: Value) {
    let list = config
        .as_object_mut()
        .expect("kubeconfig is an object")
        .entry(field)
        .or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let items = list.as_array_mut().expect("array");
    items.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    items.push(entry);
    items.sort_by(|a, b| {
        let n = |v: &Value| {
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        n(a).cmp(&n(b))
    });
}

fn write(path: &Path, name: &str, server: &str, ca: &str, auth: &Auth) -> Result<()> {
    let mut config = load(path)?.unwrap_or_else(|| json!({}));
    if !config.is_object() {
        bail!(
            "error loading config file {:?}: not a kubeconfig",
            path.display().to_string()
        );
    }
    upsert(
        &mut config,
        "clusters",
        name,
        json!({"name": name, "cluster": {"certificate-authority-data": ca, "server": server}}),
    );
    let user_name = match auth {
        Auth::Existing(user) => user.clone(),
        _ => name.to_string(),
    };
    match auth {
        Auth::Admin(lifetime) => {
            let (cert, key) = admin_credential(name, *lifetime);
            upsert(
                &mut config,
                "users",
                name,
                json!({"name": name, "user": {"client-certificate-data": cert, "client-key-data": key}}),
            );
        }
        Auth::Plugin(state) => upsert(
            &mut config,
            "users",
            name,
            json!({"name": name, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kops",
                "args": ["helpers", "kubectl-auth", format!("--cluster={name}"), format!("--state={state}")],
            }}}),
        ),
        Auth::None => upsert(
            &mut config,
            "users",
            name,
            json!({"name": name, "user": {}}),
        ),
        Auth::Existing(_) => {}
    }
    upsert(
        &mut config,
        "contexts",
        name,
        json!({"name": name, "context": {"cluster": name, "user": user_name}}),
    );
    let obj = config.as_object_mut().expect("object");
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!("Config"));
    obj.entry("preferences").or_insert_with(|| json!({}));
    obj.insert("current-context".into(), json!(name));
    let text = objects::to_yaml(&config)?;
    write_private(path, text.as_bytes())
}

/// A placeholder admin credential: kOps issues a real client certificate
/// (`CN=kubecfg-<user>`, `O=system:masters`) signed by the cluster CA; the
/// stand-in writes recognisable fake PEM blocks carrying the same facts.
fn admin_credential(cluster: &str, lifetime: i128) -> (String, String) {
    let user = std::env::var("USER").unwrap_or_default();
    let cn = if user.is_empty() {
        "kubecfg".to_string()
    } else {
        format!("kubecfg-{user}")
    };
    let expires = ui::rfc3339_after(i64::try_from(lifetime / 1_000_000_000).unwrap_or(i64::MAX));
    let body = B64.encode(format!(
        "KOPS-STANDIN-FAKE-CLIENT-CERTIFICATE cluster={cluster} CN={cn} O=system:masters notAfter={expires}\n"
    ));
    let cert = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
    let key_body = B64.encode(format!("KOPS-STANDIN-FAKE-CLIENT-KEY cluster={cluster}\n"));
    let key =
        format!("-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----\n");
    (B64.encode(cert), B64.encode(key))
}

/// Writes `data` atomically with mode 0600, creating the directory, as
/// client-go does for kubeconfig files.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("error creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("error writing {}", tmp.display()))?;
    file.write_all(data)
        .with_context(|| format!("error writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("error writing {}", path.display()))
}
