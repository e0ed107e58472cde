//! A fake AWS STS on 127.0.0.1: answers every request with an
//! `AssumeRole` response holding fixed (canary) credentials, so a test can
//! prove those credentials never show up where they must not. Stops when
//! dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The temporary credentials the fake hands out.
pub struct Canary {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
    pub session_token: &'static str,
}

pub const CANARY: Canary = Canary {
    access_key_id: "ASIACANARYASSUMEDKEY",
    secret_access_key: "CanaryAssumedSecret0123456789abcdefABCDEF",
    // Shaped like a real token: base64 with `+`, `/` and `=`.
    session_token: "CanaryAssumedSessionToken+abc/DEF//ghi==",
};

/// A running fake STS.
pub struct FakeSts {
    endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSts {
    pub fn start() -> FakeSts {
        FakeSts::start_with(&CANARY)
    }

    /// A fake STS handing out `credentials` instead of [`CANARY`].
    pub fn start_with(credentials: &'static Canary) -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake STS");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(body) = answer(stream, credentials) {
                                requests.lock().unwrap().push(body);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FakeSts {
            endpoint,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_STS`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The form bodies of the requests so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn response(credentials: &Canary) -> String {
    format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{}</AccessKeyId>
      <SecretAccessKey>{}</SecretAccessKey>
      <SessionToken>{}</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:kopsci</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/kops/kopsci</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>fake-sts</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
}

/// Reads one request and answers it; returns the request body.
fn answer(stream: TcpStream, credentials: &Canary) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let text = response(credentials);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )
    .ok()?;
    Some(body)
}
