//! A loopback TCP proxy that delays every byte by a fixed time in each
//! direction, standing in for network latency (this kernel has no netem).
//! Plain std, built by `bench/snapshot/run` with `rustc -O`.
//!
//!     delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS
//!
//! Binds 127.0.0.1 only; prints `ready` once listening; stops on SIGTERM.
//! Each chunk is held for DELAY_MS from when it was read, not queued behind
//! the previous chunk's delay: throughput is unchanged, only latency is
//! added. TCP handshakes with the proxy are local (not delayed), for every
//! client alike.
//!
//! One thread and one `ppoll` loop for every connection: a network adds no
//! work on the client's machine, so the proxy must not either. (A thread
//! per connection and direction cost as much CPU as the client itself when
//! a client opened dozens of connections at once, on the same 2 cores.)

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn ppoll(fds: *mut PollFd, nfds: u64, timeout: *const Timespec, sigmask: *const u8) -> i32;
}

const POLLIN: i16 = 0x1;
const POLLOUT: i16 = 0x4;

/// Bytes read from one socket, waiting to be written to the other.
struct Direction {
    /// Chunks with the time they may be written; an empty chunk is the
    /// end of the stream (shut the other side's write half).
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// How much of the front chunk is already written.
    written: usize,
    /// The reading side hit end of stream (or an error).
    read_done: bool,
    /// The end of stream was passed on.
    closed: bool,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            queue: VecDeque::new(),
            written: 0,
            read_done: false,
            closed: false,
        }
    }

    /// Reads what `from` has now; queues it with its due time.
    fn read(&mut self, from: &mut TcpStream, buf: &mut [u8], delay: Duration) {
        loop {
            // Any error but "nothing now" ends the stream like EOF does.
            match from.read(buf) {
                Ok(n) if n > 0 => self.queue.push_back((Instant::now() + delay, buf[..n].to_vec())),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => {
                    self.queue.push_back((Instant::now() + delay, Vec::new()));
                    self.read_done = true;
                    return;
                }
            }
        }
    }

    /// Writes every due chunk `to` can take now.
    fn flush(&mut self, to: &mut TcpStream, now: Instant) -> Result<(), ()> {
        while let Some((due, data)) = self.queue.front() {
            if *due > now {
                return Ok(());
            }
            if data.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                self.queue.pop_front();
                self.closed = true;
                return Ok(());
            }
            match to.write(&data[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written == data.len() {
                        self.queue.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Ok(())
    }

    /// Whether the front chunk is due but the socket would not take it.
    fn blocked(&self, now: Instant) -> bool {
        self.queue.front().is_some_and(|(due, _)| *due <= now)
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }
}

struct Pair {
    client: TcpStream,
    upstream: TcpStream,
    up: Direction,
    down: Direction,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS"))
        .collect();
    let [listen, upstream_port, delay_ms] = args[..] else {
        panic!("usage: delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS");
    };
    let upstream_port = u16::try_from(upstream_port).expect("upstream port");
    let delay = Duration::from_millis(delay_ms);
    let listener =
        TcpListener::bind(("127.0.0.1", u16::try_from(listen).expect("port"))).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking listener");
    println!("ready");

    let mut pairs: Vec<Pair> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds: Vec<PollFd> = Vec::new();
    loop {
        let now = Instant::now();
        fds.clear();
        fds.push(PollFd { fd: listener.as_raw_fd(), events: POLLIN, revents: 0 });
        let mut next_due: Option<Instant> = None;
        for pair in &pairs {
            for (stream, reading, writing) in [
                (&pair.client, &pair.up, &pair.down),
                (&pair.upstream, &pair.down, &pair.up),
            ] {
                let mut events = 0;
                if !reading.read_done {
                    events |= POLLIN;
                }
                if writing.blocked(now) {
                    events |= POLLOUT;
                }
                // A socket with nothing to wait for is left out (a negative
                // fd), or its hang-up would wake the loop until it is dropped.
                let fd = if events == 0 { -1 } else { stream.as_raw_fd() };
                fds.push(PollFd { fd, events, revents: 0 });
            }
            for due in [pair.up.next_due(), pair.down.next_due()].into_iter().flatten() {
                if due > now {
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                }
            }
        }
        let timeout = next_due.map(|due| {
            let wait = due.saturating_duration_since(now);
            Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: i64::from(wait.subsec_nanos()) }
        });
        let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const Timespec);
        // SAFETY: `fds` is a live, correctly sized array of pollfd structs
        // and `timeout_ptr` is null or points at a live timespec.
        let ready = unsafe { ppoll(fds.as_mut_ptr(), fds.len() as u64, timeout_ptr, std::ptr::null()) };
        if ready < 0 {
            continue; // EINTR
        }

        if fds[0].revents != 0 {
            while let Ok((client, _)) = listener.accept() {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                for s in [&client, &upstream] {
                    let _ = s.set_nodelay(true);
                    s.set_nonblocking(true).expect("nonblocking socket");
                }
                pairs.push(Pair { client, upstream, up: Direction::new(), down: Direction::new() });
            }
        }

        let polled = pairs.len().min((fds.len() - 1) / 2);
        for (i, pair) in pairs.iter_mut().enumerate().take(polled) {
            if fds[1 + 2 * i].revents & !POLLOUT != 0 && !pair.up.read_done {
                pair.up.read(&mut pair.client, &mut buf, delay);
            }
            if fds[2 + 2 * i].revents & !POLLOUT != 0 && !pair.down.read_done {
                pair.down.read(&mut pair.upstream, &mut buf, delay);
            }
        }
        let now = Instant::now();
        pairs.retain_mut(|pair| {
            let ok = pair.up.flush(&mut pair.upstream, now).is_ok()
                && pair.down.flush(&mut pair.client, now).is_ok();
            ok && !(pair.up.closed && pair.down.closed)
        });
    }
}
