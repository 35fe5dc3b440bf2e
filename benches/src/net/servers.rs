//! The peer servers: started and stopped through `benches/scripts/servers.sh`
//! (which installs them with apt if missing), then probed: a server counts as
//! up only if its port accepts a TCP connection.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::NetOpts;

/// One peer server, as the report shows it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `nats` or `redis`.
    pub name: String,
    /// What `--version` printed, or `not installed`.
    pub version: String,
    /// `up at ADDR` or `down: why`.
    pub status: String,
    /// Whether it answered.
    pub up: bool,
}

pub(crate) struct Servers {
    pub(crate) info: Vec<ServerInfo>,
    /// Whether `stop` should run the script's `stop`.
    managed: bool,
    script: PathBuf,
    script_output: String,
}

fn version(cmd: &str) -> String {
    Command::new(cmd)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "not installed".into())
}

fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok())
        .is_some()
}

fn port(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or_default().to_string()
}

impl Servers {
    pub(crate) fn start(opts: &NetOpts) -> Self {
        let script = opts.servers_script.clone();
        let mut script_output = String::new();
        if opts.manage_servers {
            match Command::new("bash")
                .arg(&script)
                .arg("start")
                .env("RINGCAST_BENCH_NATS_PORT", port(&opts.nats_addr))
                .env("RINGCAST_BENCH_REDIS_PORT", port(&opts.redis_addr))
                .output()
            {
                Ok(o) => {
                    script_output = String::from_utf8_lossy(&o.stdout).to_string();
                    if opts.verbose {
                        for line in script_output.lines() {
                            eprintln!("[net] servers.sh: {line}");
                        }
                        let err = String::from_utf8_lossy(&o.stderr);
                        for line in err.lines() {
                            eprintln!("[net] servers.sh: {line}");
                        }
                    }
                }
                Err(e) => script_output = format!("cannot run {}: {e}", script.display()),
            }
        }
        let mut info = Vec::new();
        for (name, bin, addr) in [
            ("nats", "nats-server", &opts.nats_addr),
            ("redis", "redis-server", &opts.redis_addr),
        ] {
            let up = answers(addr);
            let status = if up {
                format!("up at {addr}")
            } else {
                let why = script_output
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: down ")))
                    .map(|s| s.trim_matches(|c| c == '(' || c == ')').to_string())
                    .unwrap_or_else(|| format!("nothing answers at {addr}"));
                format!("down: {why}")
            };
            info.push(ServerInfo {
                name: name.into(),
                version: version(bin),
                status,
                up,
            });
        }
        Self {
            info,
            managed: opts.manage_servers,
            script,
            script_output,
        }
    }

    pub(crate) fn up(&self, name: &str) -> bool {
        self.info.iter().any(|i| i.name == name && i.up)
    }

    pub(crate) fn why_down(&self, name: &str) -> String {
        self.info
            .iter()
            .find(|i| i.name == name)
            .map(|i| format!("{} server {}", i.name, i.status))
            .unwrap_or_default()
    }

    pub(crate) fn stop(&self) {
        if self.managed {
            let _ = &self.script_output;
            let _ = Command::new("bash").arg(&self.script).arg("stop").output();
        }
    }
}
