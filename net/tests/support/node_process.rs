//! A `ringcast node` process driven like a script would: commands on stdin,
//! one JSON object per stdout line.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

/// How long any expected line may take.
const T: Duration = Duration::from_secs(15);

/// A running `ringcast node`. Dropping it kills it.
pub struct NodeProc {
    pub child: Child,
    /// `None` once closed, to test that end of stdin does not stop a node.
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    /// Every stdout line read so far, in order.
    pub seen: Vec<Value>,
}

impl NodeProc {
    /// Starts `ringcast node ARGS...`; every stdout line must be JSON.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("node")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringcast node");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin: Some(stdin),
            lines,
            seen: Vec::new(),
        }
    }

    /// Writes one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line with `"event": event` matching `pred`; other lines are
    /// kept in `seen` and skipped.
    pub fn expect(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event} line; seen {:?}", self.seen));
            self.seen.push(v.clone());
            if v["event"] == event && pred(&v) {
                return v;
            }
        }
    }

    /// Reads lines until `cond` holds over all lines seen.
    pub fn wait(&mut self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + T;
        while !cond(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what}; seen {:?}", self.seen));
            self.seen.push(v);
        }
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    /// SIGTERM, then wait: the node must exit cleanly on it.
    pub fn terminate(mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port free right now.
pub fn free_addr() -> String {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}
