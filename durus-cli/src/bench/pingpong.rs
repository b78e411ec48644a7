//! The bound under every server workload: a bare TCP round trip on
//! loopback, with `TCP_NODELAY`, of a request and a reply the size of a
//! small commit exchange (9 bytes out, 120 back by default).

use super::json::Record;
use super::procs::bench_error;
use durus_core::error::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Measures `rounds` round trips on each of `pairs` connections at once
/// (a client thread and an echo thread per pair) and returns a record with
/// the total rate, the mean and the percentiles of one round trip (µs).
pub fn run(rounds: u64, request: usize, reply: usize, pairs: usize) -> Result<Record> {
    if rounds == 0 || request == 0 || reply == 0 || request > 1 << 20 || reply > 1 << 20 {
        return Err(bench_error(
            "rounds, request and reply must be positive (and at most 1 MiB)",
        ));
    }
    if pairs == 0 || pairs > 256 {
        return Err(bench_error("pairs must be between 1 and 256"));
    }
    let t0 = Instant::now();
    let clients: Vec<_> = (0..pairs)
        .map(|_| std::thread::spawn(move || one_pair(rounds, request, reply)))
        .collect();
    let mut lat: Vec<u64> = Vec::with_capacity(rounds as usize * pairs);
    for c in clients {
        match c.join() {
            Ok(r) => lat.extend(r?),
            Err(_) => return Err(bench_error("ping-pong: a client thread failed")),
        }
    }
    let total = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let all = rounds as f64 * pairs as f64;
    let us = |p: f64| super::data::percentile(&lat, p).map(|ns| ns as f64 / 1000.0);
    let mean = lat.iter().map(|&n| n as f64).sum::<f64>() / lat.len().max(1) as f64 / 1000.0;
    let mut rec = Record::new();
    rec.set("peer", "durus-rs")
        .set("workload", "pingpong")
        .set("rounds", rounds)
        .set("pairs", pairs)
        .set("request_bytes", request)
        .set("reply_bytes", reply)
        .set("round_trips_per_s", all / total)
        .set("mean_us", mean)
        .set("p50_us", us(50.0))
        .set("p99_us", us(99.0))
        .set("p999_us", us(99.9));
    Ok(rec)
}

/// One connection's round trips, in nanoseconds each.
fn one_pair(rounds: u64, request: usize, reply: usize) -> Result<Vec<u64>> {
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
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&out).map_err(|e| io("write", e))?;
        s.read_exact(&mut inb).map_err(|e| io("read", e))?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    drop(s);
    match echo.join() {
        Ok(r) => r.map_err(|e| io("echo", e))?,
        Err(_) => return Err(bench_error("ping-pong: the echo thread failed")),
    }
    Ok(lat)
}
