//! A small HTTP/1.1 proxy in front of the test S3 server that misbehaves on
//! purpose: answers a share of requests with `503 SlowDown`, delays
//! requests, or replaces object listings with a hostile one. Stops when
//! dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the proxy misbehaves.
#[derive(Clone, Default)]
pub struct ProxyBuilder {
    fail_every: Option<usize>,
    delay: Duration,
    listing: Option<String>,
}

impl ProxyBuilder {
    /// Answer every `n`th request with `503 SlowDown`.
    pub fn slow_down_every(mut self, n: usize) -> Self {
        assert!(n >= 2, "failing every request would never succeed");
        self.fail_every = Some(n);
        self
    }

    /// Hold every request for `delay` before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answer every ListObjectsV2 request with this XML body.
    pub fn listing(mut self, xml: impl Into<String>) -> Self {
        self.listing = Some(xml.into());
        self
    }

    pub fn start(self, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            config: self,
            upstream,
            stop: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }
}

struct Shared {
    config: ProxyBuilder,
    upstream: SocketAddr,
    stop: AtomicBool,
    requests: AtomicUsize,
    faults: AtomicUsize,
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with an injected error.
    pub fn faults(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>kopsci-test</RequestId></Error>";

/// Serves one client connection: synthetic answers keep it open, forwarded
/// requests close it after the response (the upstream is asked to close,
/// so its response ends at EOF and needs no parsing).
fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let body_len = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; body_len];
        reader.read_exact(&mut body)?;
        if !shared.config.delay.is_zero() {
            std::thread::sleep(shared.config.delay);
        }
        let request_line = head.lines().next().unwrap_or_default().to_string();
        if let Some(xml) = &shared.config.listing
            && request_line.starts_with("GET ")
            && request_line.contains("list-type=2")
        {
            respond(&mut client, "200 OK", "application/xml", xml)?;
            continue;
        }
        if shared
            .config
            .fail_every
            .is_some_and(|every| n.is_multiple_of(every))
        {
            shared.faults.fetch_add(1, Ordering::SeqCst);
            respond(&mut client, "503 Slow Down", "application/xml", SLOW_DOWN)?;
            continue;
        }
        let Ok(mut upstream) = TcpStream::connect(shared.upstream) else {
            // The server is gone: drop the connection, as a dead host would.
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        };
        let mut forwarded = String::new();
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            if line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
        forwarded.push_str("Connection: close\r\n\r\n");
        upstream.write_all(forwarded.as_bytes())?;
        upstream.write_all(&body)?;
        std::io::copy(&mut upstream, &mut client)?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Ok(Some(head));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn respond(
    client: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    client.flush()
}
