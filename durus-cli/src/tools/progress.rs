//! Progress on a terminal: a counter rewritten in place on stderr, shown
//! only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is rewritten.
const EVERY: Duration = Duration::from_millis(200);

/// A progress line for long work.
pub struct Progress {
    label: String,
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    /// A progress line labelled `label`, shown if stderr is a terminal.
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    /// A progress line that never shows (for library callers and tests).
    pub fn hidden() -> Progress {
        Progress {
            label: String::new(),
            enabled: false,
            last: Instant::now(),
            shown: false,
        }
    }

    /// Reports `done` units so far (redrawn at most every 200 ms).
    pub fn update(&mut self, done: u64) {
        if self.enabled && self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            self.shown = true;
            let _ = write!(std::io::stderr(), "\r{}: {done}", self.label);
        }
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
