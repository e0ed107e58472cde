//! A real S3 server for tests: SeaweedFS `weed mini` on free 127.0.0.1
//! ports, with a private data directory, stopped (and its data removed)
//! when dropped, also when the test panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

/// Credentials the server is started with; test-only.
pub const ACCESS_KEY: &str = "kopsci-test-access";
pub const SECRET_KEY: &str = "kopsci-test-secret";

/// Where the SeaweedFS binary is: `KOPSCI_WEED`, else the project's
/// `.tools/bin/weed` that `scripts/install-test-deps` installs.
pub fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KOPSCI_WEED") {
        return PathBuf::from(path);
    }
    super::repo_root().join(".tools/bin/weed")
}

/// A running SeaweedFS S3 server.
pub struct S3Server {
    child: Option<Child>,
    ports: Vec<u16>,
    s3: SocketAddr,
    data: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl S3Server {
    /// Starts a server and waits until it accepts S3 requests. Panics (the
    /// test fails, it is never skipped) when SeaweedFS is not installed.
    pub fn start() -> S3Server {
        S3Server::start_with(&weed_binary())
    }

    /// Starts the `weed` binary at `weed`.
    pub fn start_with(weed: &Path) -> S3Server {
        assert!(
            weed.is_file(),
            "SeaweedFS `weed` not found at {}: run scripts/install-test-deps \
             (or set KOPSCI_WEED to a `weed` binary)",
            weed.display()
        );
        let mut last_error = String::new();
        // Free ports are picked, released and then bound by weed: another
        // process can take one in between, so try again with new ports.
        for _ in 0..3 {
            match S3Server::try_start(weed) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("SeaweedFS did not start: {last_error}");
    }

    fn try_start(weed: &Path) -> Result<S3Server, String> {
        let data = tempfile::Builder::new()
            .prefix("kopsci-weed-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let ports = free_ports(10);
        let log = std::fs::File::create(data.path().join("weed.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let store = data.path().join("store");
        std::fs::create_dir(&store).map_err(|e| e.to_string())?;
        let args = [
            format!("-dir={}", store.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", ports[0]),
            format!("-volume.port={}", ports[1]),
            format!("-filer.port={}", ports[2]),
            format!("-s3.port={}", ports[3]),
            format!("-master.port.grpc={}", ports[4]),
            format!("-volume.port.grpc={}", ports[5]),
            format!("-filer.port.grpc={}", ports[6]),
            format!("-s3.port.grpc={}", ports[7]),
            format!("-admin.port={}", ports[8]),
            format!("-admin.port.grpc={}", ports[9]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
            format!(
                "-filer.localSocket={}",
                data.path().join("filer.sock").display()
            ),
            format!("-s3.localSocket={}", data.path().join("s3.sock").display()),
        ];
        let child = Command::new(weed)
            .arg("mini")
            .args(&args)
            .current_dir(data.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", weed.display()))?;
        let s3: SocketAddr = ([127, 0, 0, 1], ports[3]).into();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = client_for(&format!("http://{s3}"));
        let mut server = S3Server {
            child: Some(child),
            ports,
            s3,
            data,
            runtime,
            client,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Ready means buckets can be created and listed, not merely that the
    /// port answers: the filer behind the S3 gateway starts later.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("weed exited with {status}: {}", self.log()));
            }
            if http_answers(self.s3) {
                let client = self.client.clone();
                let ok = self
                    .runtime
                    .block_on(async move { client.list_buckets().send().await.is_ok() });
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.data.path().join("weed.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3)
    }

    pub fn addr(&self) -> SocketAddr {
        self.s3
    }

    /// The variables `kopsci` (like kOps) reads to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_for(&self.endpoint())
    }

    pub fn create_bucket(&self, bucket: &str) {
        let client = self.client.clone();
        let bucket = bucket.to_string();
        self.runtime.block_on(async move {
            client
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
        });
    }

    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let client = self.client.clone();
        let (bucket, key, body) = (bucket.to_string(), key.to_string(), body.into());
        self.runtime.block_on(put_object(client, bucket, key, body));
    }

    /// Puts many objects, 16 at a time.
    pub fn put_many(&self, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
        let client = self.client.clone();
        let bucket = bucket.to_string();
        self.runtime.block_on(async move {
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = tokio::task::JoinSet::new();
            for (key, body) in objects {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let client = client.clone();
                let bucket = bucket.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    put_object(client, bucket, key, body).await;
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("put task");
            }
        });
    }

    /// Every object of `bucket` by key, with its bytes: what tests compare
    /// to prove a command left the live store untouched.
    pub fn objects(&self, bucket: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        let client = self.client.clone();
        let bucket = bucket.to_string();
        self.runtime.block_on(async move {
            let mut out = std::collections::BTreeMap::new();
            let mut token = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
                for object in page.contents() {
                    let key = object.key().expect("listed key").to_string();
                    let body = client
                        .get_object()
                        .bucket(&bucket)
                        .key(&key)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
                        .body
                        .collect()
                        .await
                        .unwrap_or_else(|e| panic!("body of {key}: {e:?}"))
                        .into_bytes()
                        .to_vec();
                    out.insert(key, body);
                }
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return out;
                }
            }
        })
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let client = self.client.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.runtime.block_on(async move {
            client
                .delete_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
        });
    }

    /// Uploads every file under `dir` to `bucket` at `prefix/<relative path>`
    /// (`prefix` may be empty). Returns how many objects were put.
    pub fn seed_dir(&self, bucket: &str, prefix: &str, dir: &Path) -> usize {
        let objects: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.expect("walk seed dir"))
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = rel_path(dir, e.path());
                let key = if prefix.is_empty() {
                    rel
                } else {
                    format!("{}/{rel}", prefix.trim_end_matches('/'))
                };
                (key, std::fs::read(e.path()).expect("read seed file"))
            })
            .collect();
        let count = objects.len();
        self.put_many(bucket, objects);
        count
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_sockets();
    }

    /// Stops the server politely (SIGTERM), then forcibly after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_sockets();
    }

    /// SeaweedFS puts gRPC sockets in /tmp named by port, and leaves them
    /// behind when killed.
    fn remove_sockets(&self) {
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        let suffixes: Vec<String> = self.ports.iter().map(|p| format!("-{p}.sock")).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("seaweedfs-") && suffixes.iter().any(|s| name.ends_with(s.as_str()))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The kOps variables for an S3-compatible store at `endpoint`.
pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("S3_ENDPOINT", endpoint.to_string()),
        ("S3_REGION", "us-east-1".to_string()),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
    ]
}

fn client_for(endpoint: &str) -> Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .build();
    Client::from_conf(config)
}

/// Distinct free ports, all held open together while picked so none repeats.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn http_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(stream.read(&mut buf), Ok(n) if n >= 5 && buf.starts_with(b"HTTP/"))
}

/// Puts one object, panicking on any error.
async fn put_object(client: Client, bucket: String, key: String, body: Vec<u8>) {
    client
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// `path` relative to `dir`, `/`-separated.
pub fn rel_path(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or_else(|_| panic!("{} is not under {}", path.display(), dir.display()))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}
