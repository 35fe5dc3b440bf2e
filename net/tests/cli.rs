//! The `ringcast` binary's contract: `cert`, and `node` driven over stdin
//! with JSON lines on stdout.

mod support;

use std::process::Command;
use std::time::Duration;

use support::node_process::{free_addr, NodeProc, BIN};

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

    let p_addr = free_addr();
    let mut p = NodeProc::spawn(&[
        "--name",
        "p",
        "--listen",
        &p_addr,
        "--certs",
        d,
        "--subscribe",
        "t",
    ]);
    let ready = p.expect("ready", |_| true);
    assert_eq!(ready["node"], "p");
    assert_eq!(ready["listen"], p_addr);
    assert_eq!(ready["epoch"].as_str().unwrap().len(), 16);

    let a_addr = free_addr();
    let peer = format!("p@{p_addr}");
    let mut a = NodeProc::spawn(&[
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
    a.expect("ready", |_| true);
    let c = a.expect("connected", |_| true);
    assert_eq!(
        (c["peer"].as_str(), c["outcome"].as_str()),
        (Some("p"), Some("new"))
    );
    assert!(c["handshake_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{c}");

    p.send("pub t hello world");
    p.send("pub t second");
    for (seq, payload) in [(0, "hello world"), (1, "second")] {
        for node in [&mut p, &mut a] {
            let m = node.expect("message", |_| true);
            assert_eq!(m["from"], "p");
            assert_eq!(m["seq"], seq);
            assert_eq!(m["topic"], "t");
            assert_eq!(m["payload"], payload);
            assert_eq!(m["epoch"], ready["epoch"]);
        }
    }

    p.send("flush 5000");
    let f = p.expect("flushed", |_| true);
    assert_eq!(f["ok"], true);
    assert_eq!(f["lagging"], serde_json::json!([]));

    // A bad line gets an error line and the node carries on.
    p.send("frobnicate");
    let e = p.expect("error", |_| true);
    assert!(e["error"].as_str().unwrap().contains("unknown command"));
    p.send("pub t after-error");
    let m = a.expect("message", |_| true);
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
    let m = a.expect("message", |_| true);
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
