//! A fake GitLab REST API on 127.0.0.1 for `kopsci note` and `kopsci
//! drift`: answers scripted replies in order (one connection per request),
//! records every request with its headers, and flags any request that is
//! not the next scripted one or lacks the token. Also a server that accepts
//! connections and never answers, for timeouts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The token the tests hand kopsci.
pub const TOKEN: &str = "glpat-test-SECRET-token-0123";

/// The answer to `GET /user` for [`TOKEN`]: the bot, user 7.
pub fn bot_user() -> Reply {
    reply(
        "GET",
        "/api/v4/user",
        200,
        serde_json::json!({"id": 7, "username": "kopsci-bot"}),
    )
}

/// `kopsci` run in `dir` as a job (900) of pipeline `pipeline` of project
/// 42, started by `source`, talking to `api` with [`TOKEN`].
pub fn gitlab_job(
    dir: &std::path::Path,
    api: &FakeGitLab,
    source: &str,
    pipeline: u32,
) -> crate::harness::Kopsci {
    crate::pipeline::kopsci_outside_ci(dir)
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_SOURCE", source)
        .env("CI_API_V4_URL", api.api_url())
        .env("CI_PROJECT_ID", "42")
        .env("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env(
            "CI_PIPELINE_URL",
            format!("https://gitlab.example.com/g/fleet/-/pipelines/{pipeline}"),
        )
        .env(
            "CI_JOB_URL",
            "https://gitlab.example.com/g/fleet/-/jobs/900",
        )
        .env("KOPSCI_GITLAB_TOKEN", TOKEN)
}

/// How a scripted reply's body is made.
pub enum Body {
    Fixed(String),
    /// The request's JSON object merged over this one, as GitLab answers a
    /// create or edit with the object as stored; a `state_event` of
    /// `close` / `reopen` sets `state`.
    Echo(serde_json::Value),
}

/// One scripted answer.
pub struct Reply {
    pub method: &'static str,
    /// The request path must start with this.
    pub path: String,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// A reply with a fixed JSON body.
pub fn reply(method: &'static str, path: &str, status: u16, body: serde_json::Value) -> Reply {
    Reply {
        method,
        path: path.to_string(),
        status,
        headers: Vec::new(),
        body: Body::Fixed(body.to_string()),
    }
}

/// A reply that answers with what was sent, merged over `base`.
pub fn echo(method: &'static str, path: &str, status: u16, base: serde_json::Value) -> Reply {
    Reply {
        body: Body::Echo(base),
        ..reply(method, path, status, serde_json::Value::Null)
    }
}

impl Reply {
    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    /// A reply whose body is not JSON.
    pub fn raw(mut self, body: &str) -> Reply {
        self.body = Body::Fixed(body.to_string());
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    /// The request's JSON body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// The fake GitLab.
pub struct FakeGitLab {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
    left: Arc<Mutex<Vec<Reply>>>,
    connections: Arc<AtomicUsize>,
}

impl FakeGitLab {
    pub fn start(script: Vec<Reply>) -> FakeGitLab {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let left = Arc::new(Mutex::new(script));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, p, l, c) = (
            seen.clone(),
            problems.clone(),
            left.clone(),
            connections.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                serve(stream, &s, &p, &l);
            }
        });
        FakeGitLab {
            port,
            seen,
            problems,
            left,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT/api/v4`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v4", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// TCP connections accepted, whatever was sent on them.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every scripted answer was asked for, and nothing else.
    #[track_caller]
    pub fn assert_done(&self) {
        let problems = self.problems.lock().expect("lock");
        assert!(problems.is_empty(), "unexpected requests: {problems:#?}");
        let left = self.left.lock().expect("lock");
        let pending: Vec<String> = left
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(pending.is_empty(), "never requested: {pending:?}");
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    Some(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn echo_body(base: &serde_json::Value, request: &Seen) -> String {
    let mut object = base.as_object().cloned().unwrap_or_default();
    if let Ok(serde_json::Value::Object(sent)) = serde_json::from_str(&request.body) {
        for (key, value) in sent {
            if key == "state_event" {
                let state = if value == "close" { "closed" } else { "opened" };
                object.insert("state".into(), state.into());
            } else {
                object.insert(key, value);
            }
        }
    }
    serde_json::Value::Object(object).to_string()
}

fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    problems: &Mutex<Vec<String>>,
    left: &Mutex<Vec<Reply>>,
) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let mut problem = None;
    if request.headers.get("private-token").map(String::as_str) != Some(TOKEN) {
        problem = Some("missing or wrong PRIVATE-TOKEN".to_string());
    }
    if request.method != "GET"
        && request.headers.get("content-type").map(String::as_str) != Some("application/json")
    {
        problem = Some("a body without Content-Type: application/json".to_string());
    }
    let next = {
        let mut left = left.lock().expect("lock");
        if left.is_empty() {
            None
        } else {
            Some(left.remove(0))
        }
    };
    let reply = match next {
        Some(r) if r.method == request.method && request.path.starts_with(&r.path) => Some(r),
        Some(r) => {
            problem = Some(format!(
                "expected {} {}, got {} {}",
                r.method, r.path, request.method, request.path
            ));
            None
        }
        None => {
            problem = Some(format!(
                "nothing scripted for {} {}",
                request.method, request.path
            ));
            None
        }
    };
    let (status, extra, body) = match (&problem, reply) {
        (None, Some(r)) => {
            let body = match &r.body {
                Body::Fixed(text) => text.clone(),
                Body::Echo(base) => echo_body(base, &request),
            };
            (r.status, r.headers, body)
        }
        _ => (418, Vec::new(), "{\"message\":\"unexpected\"}".to_string()),
    };
    if let Some(problem) = problem {
        problems
            .lock()
            .expect("lock")
            .push(format!("{problem}: {request:?}"));
    }
    seen.lock().expect("lock").push(request);
    let mut response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// A server that accepts connections, reads the request and never answers:
/// a GitLab that hangs. Connections stay open until it is dropped.
pub struct HangingServer {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl HangingServer {
    pub fn start() -> HangingServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (r, h) = (requests.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if read_request(&stream).is_some() {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                h.lock().expect("lock").push(stream);
            }
        });
        HangingServer {
            port,
            requests,
            held,
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v4", self.port)
    }

    /// Requests received (and never answered).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HangingServer {
    fn drop(&mut self) {
        for stream in self.held.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
