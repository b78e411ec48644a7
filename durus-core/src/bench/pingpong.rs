//! The bound under every server workload: a bare TCP round trip on
//! loopback, with `TCP_NODELAY`, of a request and a reply the size of a
//! small commit exchange (9 bytes out, 120 back by default).

use super::json::Record;
use super::procs::bench_error;
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Measures `rounds` round trips between this thread and an echo thread
/// and returns a record with the rate, the mean and percentiles (µs).
pub fn run(rounds: u64, request: usize, reply: usize) -> Result<Record> {
    if rounds == 0 || request == 0 || reply == 0 || request > 1 << 20 || reply > 1 << 20 {
        return Err(bench_error(
            "rounds, request and reply must be positive (and at most 1 MiB)",
        ));
    }
    let io = |what: &str, e: std::io::Error| Error::io(format!("ping-pong: {what}"), e);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| io("address", e))?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut inb = vec![0u8; request];
        let out = vec![b'r'; reply];
        for _ in 0..rounds {
            s.read_exact(&mut inb)?;
            s.write_all(&out)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr).map_err(|e| io("connect", e))?;
    s.set_nodelay(true).map_err(|e| io("nodelay", e))?;
    let out = vec![b'q'; request];
    let mut inb = vec![0u8; reply];
    let mut lat: Vec<u64> = Vec::with_capacity(rounds as usize);
    let t0 = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&out).map_err(|e| io("write", e))?;
        s.read_exact(&mut inb).map_err(|e| io("read", e))?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let total = t0.elapsed().as_secs_f64();
    drop(s);
    match echo.join() {
        Ok(r) => r.map_err(|e| io("echo", e))?,
        Err(_) => return Err(bench_error("ping-pong: the echo thread failed")),
    }
    lat.sort_unstable();
    let us = |p: f64| super::data::percentile(&lat, p).map(|ns| ns as f64 / 1000.0);
    let mut rec = Record::new();
    rec.set("peer", "durus-rs")
        .set("workload", "pingpong")
        .set("rounds", rounds)
        .set("request_bytes", request)
        .set("reply_bytes", reply)
        .set("round_trips_per_s", rounds as f64 / total)
        .set("mean_us", total * 1e6 / rounds as f64)
        .set("p50_us", us(50.0))
        .set("p99_us", us(99.0))
        .set("p999_us", us(99.9));
    Ok(rec)
}
