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

/// Creates `topics` (name, partitions) on the broker.
#[allow(dead_code)]
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
}

/// One record as a `read_committed` consumer sees it.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every committed record of `topic`, read from the start up to the end of
/// what is committed now (blocking).
#[allow(dead_code)]
pub fn read_committed(bootstrap: &str, topic: &str) -> Vec<Seen> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "headwater-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut ended = std::collections::HashSet::new();
    let mut seen = Vec::new();
    let started = Instant::now();
    while ended.len() < partitions {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} did not reach its end"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => seen.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    seen
}
