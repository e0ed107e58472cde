//! A loopback TCP proxy that delays every byte by a fixed time in each
//! direction, standing in for network latency (this kernel has no netem).
//! Plain std, built by `bench/snapshot/run` with `rustc -O`, so its own
//! overhead stays far below the delay it adds.
//!
//!     delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS
//!
//! Binds 127.0.0.1 only; prints `ready` once listening; stops on SIGTERM.
//! Each chunk is held for DELAY_MS from when it was read, not queued behind
//! the previous chunk's delay: throughput is unchanged, only latency is
//! added. TCP handshakes with the proxy are local (not delayed), for every
//! client alike.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (due, data) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if data.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            if to.write_all(&data).is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS"))
        .collect();
    let [listen, upstream, delay_ms] = args[..] else {
        panic!("usage: delay_proxy LISTEN_PORT UPSTREAM_PORT DELAY_MS");
    };
    let upstream = u16::try_from(upstream).expect("upstream port");
    let delay = Duration::from_millis(delay_ms);
    let listener =
        TcpListener::bind(("127.0.0.1", u16::try_from(listen).expect("port"))).expect("bind");
    println!("ready");
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        thread::spawn(move || {
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (Ok(client2), Ok(up2)) = (client.try_clone(), up.try_clone()) else {
                return;
            };
            let forward = thread::spawn(move || pump(client2, up, delay));
            pump(up2, client, delay);
            let _ = forward.join();
        });
    }
}
