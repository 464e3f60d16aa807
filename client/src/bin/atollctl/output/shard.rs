//! Rendering the result of `shard split`: one line of text, or JSON.
//! Ranges print as in the `shards` table (`-inf`, `+inf` for the ends of
//! the key space); JSON keys as other commands print them (`""` for an
//! end of the key space).

use atoll_proto::ShardDescriptor;
use serde_json::{json, Value};

use super::Printer;

impl Printer {
    /// `shard split`: `left` is `shard` after the split, `right` the new
    /// shard; the split key is where they meet.
    pub fn split(
        &self,
        shard: u64,
        left: &ShardDescriptor,
        right: &ShardDescriptor,
    ) -> anyhow::Result<()> {
        self.done(
            self.split_json(shard, left, right),
            &self.split_text(shard, left, right),
        )
    }

    fn split_text(&self, shard: u64, left: &ShardDescriptor, right: &ShardDescriptor) -> String {
        format!(
            "shard {shard} split at {}: shard {} now {}, new shard {} {}",
            self.bound(&right.start, "-inf"),
            left.id,
            self.range(left),
            right.id,
            self.range(right)
        )
    }

    /// `[start, end)`.
    fn range(&self, shard: &ShardDescriptor) -> String {
        format!(
            "[{}, {})",
            self.bound(&shard.start, "-inf"),
            self.bound(&shard.end, "+inf")
        )
    }

    fn split_json(&self, shard: u64, left: &ShardDescriptor, right: &ShardDescriptor) -> Value {
        json!({
            "ok": true,
            "shard_id": shard,
            "split_key": self.text(&right.start),
            "left": self.descriptor_json(left),
            "right": self.descriptor_json(right),
        })
    }

    fn descriptor_json(&self, shard: &ShardDescriptor) -> Value {
        json!({
            "id": shard.id,
            "start": self.text(&shard.start),
            "end": self.text(&shard.end),
            "version": shard.epoch.map(|e| e.version),
        })
    }
}

#[cfg(test)]
mod tests {
    use atoll_proto::Epoch;

    use super::*;

    fn descriptor(id: u64, start: &[u8], end: &[u8]) -> ShardDescriptor {
        ShardDescriptor {
            id,
            start: start.to_vec(),
            end: end.to_vec(),
            epoch: Some(Epoch {
                version: 2,
                conf_ver: 1,
            }),
            ..Default::default()
        }
    }

    const TEXT: Printer = Printer {
        json: false,
        hex: false,
    };

    #[test]
    fn a_split_names_both_ranges_as_the_shards_table_does() {
        let (left, right) = (descriptor(1, b"", b"m"), descriptor(2, b"m", b""));
        assert_eq!(
            TEXT.split_text(1, &left, &right),
            "shard 1 split at m: shard 1 now [-inf, m), new shard 2 [m, +inf)"
        );
        let hex = Printer {
            json: false,
            hex: true,
        };
        let (left, right) = (descriptor(2, b"m", b"t\n"), descriptor(5, b"t\n", b"z"));
        assert_eq!(
            hex.split_text(2, &left, &right),
            "shard 2 split at 740a: shard 2 now [6d, 740a), new shard 5 [740a, 7a)"
        );
        assert_eq!(
            TEXT.split_text(2, &left, &right),
            "shard 2 split at t\\n: shard 2 now [m, t\\n), new shard 5 [t\\n, z)"
        );
    }

    #[test]
    fn the_json_document_carries_both_descriptors() {
        let (left, right) = (descriptor(1, b"", b"m"), descriptor(2, b"m", b""));
        let doc = TEXT.split_json(1, &left, &right);
        assert_eq!(
            doc,
            json!({
                "ok": true,
                "shard_id": 1,
                "split_key": "m",
                "left": { "id": 1, "start": "", "end": "m", "version": 2 },
                "right": { "id": 2, "start": "m", "end": "", "version": 2 },
            })
        );
    }
}
