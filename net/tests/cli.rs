//! The `ringcast` binary's contract: `cert`, and `node` driven over stdin
//! with JSON lines on stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl Proc {
    fn node(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("node")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringcast node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
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
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next stdout object matching `pred`; other lines are skipped.
    fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("no {what} on stdout"),
            }
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        // SIGTERM, then wait: the node must exit cleanly on it.
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

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn cert_then_two_nodes_over_stdin_and_stdout() {
    let dir = std::env::temp_dir().join(format!("ringcast-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let status = Command::new(BIN)
        .args(["cert", "--dir", d, "--nodes", "p"])
        .status()
        .unwrap();
    assert!(status.success());
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    // Run again: the CA is reused, nodes are added.
    let status = Command::new(BIN)
        .args(["cert", "--dir", d, "--nodes", "a"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), ca);
    for f in ["ca.key", "p.crt", "p.key", "a.crt", "a.key"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }

    let p_addr = format!("127.0.0.1:{}", free_port());
    let mut p = Proc::node(&[
        "--name",
        "p",
        "--listen",
        &p_addr,
        "--certs",
        d,
        "--subscribe",
        "t",
    ]);
    let ready = p.expect("ready", |v| v["event"] == "ready");
    assert_eq!(ready["node"], "p");
    assert_eq!(ready["listen"], p_addr);
    assert_eq!(ready["epoch"].as_str().unwrap().len(), 16);

    let a_addr = format!("127.0.0.1:{}", free_port());
    let peer = format!("p@{p_addr}");
    let mut a = Proc::node(&[
        "--name",
        "a",
        "--listen",
        &a_addr,
        "--certs",
        d,
        "--peer",
        &peer,
        "--subscribe",
        "t",
        "--idle-timeout-ms",
        "2000",
    ]);
    a.expect("ready", |v| v["event"] == "ready");
    let c = a.expect("connected", |v| v["event"] == "connected");
    assert_eq!(
        (c["peer"].as_str(), c["outcome"].as_str()),
        (Some("p"), Some("new"))
    );

    p.send("pub t hello world");
    p.send("pub t second");
    for (seq, payload) in [(0, "hello world"), (1, "second")] {
        for node in [&p, &a] {
            let m = node.expect("message", |v| v["event"] == "message");
            assert_eq!(m["from"], "p");
            assert_eq!(m["seq"], seq);
            assert_eq!(m["topic"], "t");
            assert_eq!(m["payload"], payload);
            assert_eq!(m["epoch"], ready["epoch"]);
        }
    }

    p.send("flush 5000");
    let f = p.expect("flushed", |v| v["event"] == "flushed");
    assert_eq!(f["ok"], true);
    assert_eq!(f["lagging"], serde_json::json!([]));

    // A bad line gets an error line and the node carries on.
    p.send("frobnicate");
    let e = p.expect("error", |v| v["event"] == "error");
    assert!(e["error"].as_str().unwrap().contains("unknown command"));
    p.send("pub t after-error");
    let m = a.expect("message", |v| v["event"] == "message");
    assert_eq!(
        (m["seq"].as_u64(), m["payload"].as_str()),
        (Some(2), Some("after-error"))
    );

    // End of stdin does not stop a node.
    a.stdin = None;
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "node exited at end of stdin"
    );
    p.send("pub t after-eof");
    let m = a.expect("message", |v| v["event"] == "message");
    assert_eq!(
        (m["seq"].as_u64(), m["payload"].as_str()),
        (Some(3), Some("after-eof"))
    );

    assert!(a.terminate().success());
    assert!(p.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_flags_get_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "node",
            "--name",
            "a",
            "--listen",
            "nonsense",
            "--certs",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not HOST:PORT"));
    let out = Command::new(BIN)
        .args([
            "node",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--certs",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start the node"));
    let out = Command::new(BIN)
        .args([
            "node",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--certs",
            "/x",
            "--peer",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME@HOST:PORT"));
}
