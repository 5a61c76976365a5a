//! A real Kafka-protocol broker for the exactly-once tests: noida-db
//! (installed by `scripts/setup.sh`), started on 127.0.0.1 on a free port,
//! stopped when dropped. A test that finds no broker fails and says why.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Child,
    pub bootstrap: String,
    _data: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The noida-db binary that `scripts/setup.sh` installs.
fn binary() -> PathBuf {
    let cache = std::env::var_os("HEADWATER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/headwater")
        });
    let lib = cache.join("noida-venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/noida_db/noida-db"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no test broker under {}: run scripts/setup.sh (it installs noida-db from PyPI)",
                lib.display()
            )
        })
}

/// Starts a broker and waits until it takes connections.
pub fn start() -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let child = Command::new(binary())
        .args(["start", "--host", "127.0.0.1", "--only", "kafka"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--kafka-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test broker starts");
    let bootstrap = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(&bootstrap).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test broker did not listen on {bootstrap}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        bootstrap,
        _data: data,
    }
}
