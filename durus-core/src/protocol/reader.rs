//! [`FrameReader`]: runs a pure decoder over any `Read`, buffering what
//! arrives, with optional deadlines for sockets that have a read timeout.

use super::Decoded;
use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The most bytes read in one call; the buffer never grows faster than data arrives.
const CHUNK: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        have: usize,
    },
    /// The bytes are not a valid frame.
    Malformed(String),
    /// Nothing arrived within the socket's read timeout and no frame had
    /// started: the peer is idle. The caller may simply try again.
    Idle,
    /// A frame (or the exchange it belongs to) took longer than allowed.
    TimedOut {
        /// Bytes of the unfinished frame that had arrived.
        have: usize,
    },
    /// An I/O error.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "connection closed"),
            ReadError::Truncated { have } => {
                write!(f, "connection closed after {have} bytes of a frame")
            }
            ReadError::Malformed(why) => write!(f, "malformed frame: {why}"),
            ReadError::Idle => write!(f, "idle"),
            ReadError::TimedOut { have } => {
                write!(f, "timed out with {have} bytes of a frame received")
            }
            ReadError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// A buffered reader of frames.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    frame_timeout: Option<Duration>,
}

impl<R: Read> FrameReader<R> {
    /// Reads frames from `inner`. With a `frame_timeout`, a frame that has
    /// started must be complete within it (the reader must then have a read
    /// timeout shorter than that, so that it gets control back).
    pub fn new(inner: R, frame_timeout: Option<Duration>) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
            start: 0,
            frame_timeout,
        }
    }

    /// The reader underneath.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Reads until `decode` yields a frame, the peer stops, or `deadline` passes.
    pub fn read_frame<T>(
        &mut self,
        decode: impl Fn(&[u8]) -> Decoded<T>,
        deadline: Option<Instant>,
    ) -> Result<T, ReadError> {
        let mut frame_deadline = self.frame_deadline(deadline);
        loop {
            let need = match decode(self.buffered()) {
                Decoded::Frame(value, used) => {
                    self.start += used;
                    if self.start >= self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(value);
                }
                Decoded::Malformed(why) => return Err(ReadError::Malformed(why)),
                Decoded::Need(n) => n,
            };
            let have = self.buffered().len();
            if let Some(d) = frame_deadline {
                if Instant::now() >= d {
                    return Err(ReadError::TimedOut { have });
                }
            }
            match self.fill(need.saturating_sub(have)) {
                Ok(0) if have == 0 => return Err(ReadError::Closed),
                Ok(0) => return Err(ReadError::Truncated { have }),
                Ok(_) => {
                    if frame_deadline.is_none() {
                        frame_deadline = self.frame_deadline(deadline);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if frame_deadline.is_none() {
                        return Err(ReadError::Idle);
                    }
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// The deadline of the frame now starting: the caller's, or the frame
    /// timeout once some of the frame is here.
    fn frame_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        let own = match (self.frame_timeout, self.buffered().is_empty()) {
            (Some(t), false) => Some(crate::deadline(t)),
            _ => None,
        };
        match (deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reads once, into room for `wanted` more bytes (between 4 KiB and `CHUNK`).
    fn fill(&mut self, wanted: usize) -> io::Result<usize> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        let grow = wanted.clamp(4096, CHUNK);
        self.buf.resize(len + grow, 0);
        let read = self.inner.read(self.buf.get_mut(len..).unwrap_or_default());
        let n = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LoadReply, Request};

    /// A reader that hands out one byte per call.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(b), Some(slot)) => {
                    *slot = *b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn frames_across_reads() {
        let mut bytes = Vec::new();
        LoadReply::Record(vec![7; 100]).encode(&mut bytes);
        LoadReply::Missing.encode(&mut bytes);
        let mut r = FrameReader::new(Trickle(bytes, 0), None);
        assert_eq!(
            r.read_frame(LoadReply::decode, None).unwrap(),
            LoadReply::Record(vec![7; 100])
        );
        assert_eq!(
            r.read_frame(LoadReply::decode, None).unwrap(),
            LoadReply::Missing
        );
        assert!(matches!(
            r.read_frame(LoadReply::decode, None),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn truncated_and_malformed() {
        let mut r = FrameReader::new(&b"L\x00\x00"[..], None);
        assert!(matches!(
            r.read_frame(Request::decode, None),
            Err(ReadError::Truncated { have: 3 })
        ));
        let mut r = FrameReader::new(&b"B\xff\xff\xff\xff"[..], None);
        assert!(matches!(
            r.read_frame(Request::decode, None),
            Err(ReadError::Malformed(_))
        ));
    }
}
