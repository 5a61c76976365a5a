//! Which subtask reads which partition. Headwater assigns partitions itself,
//! as Flink's Kafka source does, not through the consumer group: the owner
//! of a partition depends only on its topic, its number and the parallelism,
//! so every subtask works it out alone, and after a rescale the new owners
//! take the offsets the checkpoint holds for their partitions.

/// A topic's partition.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Java's `String.hashCode`, over UTF-16 code units, as Flink computes it.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The subtask (of `parallelism`) that reads `tp`: Flink's rule, so that a
/// topic's partitions spread from a topic-dependent start.
pub fn owner(tp: &TopicPartition, parallelism: usize) -> usize {
    let parallelism = parallelism.max(1) as i64;
    let start = i64::from(java_hash(&tp.topic).wrapping_mul(31) & 0x7FFF_FFFF) % parallelism;
    ((start + i64::from(tp.partition)) % parallelism) as usize
}

/// Which topics a source reads.
#[derive(Debug, Clone)]
pub enum Topics {
    /// These topics (`'topic' = 'a;b'`).
    Named(Vec<String>),
    /// Every topic whose whole name matches (`'topic-pattern'`).
    Pattern(regex::Regex),
}

impl Topics {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::Named(names) => names.iter().any(|n| n == topic),
            Topics::Pattern(pattern) => pattern
                .find(topic)
                .is_some_and(|m| m.start() == 0 && m.end() == topic.len()),
        }
    }

    /// The one topic, to ask the broker about only it.
    pub fn single(&self) -> Option<&str> {
        match self {
            Topics::Named(names) if names.len() == 1 => Some(&names[0]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hashes() {
        // Values of "..".hashCode() in Java.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("orders"), -1008770331);
        assert_eq!(java_hash("hello world"), 1794106052);
    }

    #[test]
    fn partitions_spread_over_subtasks_from_a_topic_start() {
        for parallelism in 1..6 {
            let owners: Vec<usize> = (0..12)
                .map(|p| {
                    owner(
                        &TopicPartition {
                            topic: "orders".into(),
                            partition: p,
                        },
                        parallelism,
                    )
                })
                .collect();
            for subtask in 0..parallelism {
                let n = owners.iter().filter(|&&o| o == subtask).count();
                assert!(n >= 12 / parallelism && n <= 12 / parallelism + 1);
            }
            // Consecutive partitions go to consecutive subtasks.
            for w in owners.windows(2) {
                assert_eq!(w[1], (w[0] + 1) % parallelism);
            }
        }
    }

    #[test]
    fn patterns_match_whole_names() {
        let topics = Topics::Pattern(regex::Regex::new("orders-.*").unwrap());
        assert!(topics.matches("orders-eu"));
        assert!(!topics.matches("old-orders-eu"));
        assert!(Topics::Named(vec!["a".into(), "b".into()]).matches("b"));
    }
}
