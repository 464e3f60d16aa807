//! Rendering results: plain text, aligned tables, or JSON (`--json`).
//! `output/cluster.rs` renders the placement driver's view,
//! `output/shard.rs` the result of `shard split`.

mod cluster;
mod shard;

use atoll_client::{Error, NodeStatus};
use serde_json::{json, Value};

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
    pub hex: bool,
}

impl Printer {
    /// Bytes as lossy UTF-8, or hex with `--hex`.
    pub fn text(&self, bytes: &[u8]) -> String {
        if self.hex {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    }

    pub fn print_json(&self, doc: &Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(doc)?);
        Ok(())
    }

    /// Prints `doc` with `--json`, else `text`.
    pub fn done(&self, doc: Value, text: &str) -> anyhow::Result<()> {
        if self.json {
            self.print_json(&doc)
        } else {
            println!("{text}");
            Ok(())
        }
    }

    /// One line per node: "ok" or its error.
    pub fn per_node(&self, results: &[(String, Result<(), Error>)]) -> anyhow::Result<()> {
        if self.json {
            let docs: Vec<Value> = results
                .iter()
                .map(|(endpoint, r)| match r {
                    Ok(()) => json!({ "endpoint": endpoint, "ok": true }),
                    Err(e) => json!({ "endpoint": endpoint, "ok": false, "error": e.to_string() }),
                })
                .collect();
            return self.print_json(&json!(docs));
        }
        for (endpoint, result) in results {
            match result {
                Ok(()) => println!("{endpoint}: ok"),
                Err(e) => println!("{endpoint}: {e}"),
            }
        }
        Ok(())
    }

    /// The `status` table (or JSON document).
    pub fn status(&self, nodes: &[NodeStatus]) -> anyhow::Result<()> {
        if self.json {
            let docs: Vec<Value> = nodes.iter().map(|n| self.status_json(n)).collect();
            return self.print_json(&json!(docs));
        }
        let header = [
            "NODE", "ADDR", "SHARD", "ROLE", "TERM", "LEADER", "LAST LOG", "APPLIED", "SNAPSHOT",
        ];
        let mut rows = Vec::new();
        for node in nodes {
            match &node.result {
                Err(e) => rows.push(vec![
                    "-".into(),
                    node.endpoint.clone(),
                    format!("unreachable: {e}"),
                ]),
                Ok(status) if status.shards.is_empty() => rows.push(vec![
                    status.node_id.to_string(),
                    status.addr.clone(),
                    "(no shards)".into(),
                ]),
                Ok(status) => {
                    for s in &status.shards {
                        rows.push(vec![
                            status.node_id.to_string(),
                            status.addr.clone(),
                            s.shard.as_ref().map_or("?".into(), |d| d.id.to_string()),
                            if s.asleep {
                                format!("{} (asleep)", s.role)
                            } else {
                                s.role.clone()
                            },
                            s.term.to_string(),
                            s.leader_id.map_or("-".into(), |l| l.to_string()),
                            s.last_log_index.to_string(),
                            s.last_applied.to_string(),
                            s.snapshot_index.to_string(),
                        ]);
                    }
                }
            }
        }
        print!("{}", table(&header, &rows));
        Ok(())
    }

    fn status_json(&self, node: &NodeStatus) -> Value {
        let status = match &node.result {
            Err(e) => {
                return json!({ "endpoint": node.endpoint, "reachable": false, "error": e.to_string() })
            }
            Ok(status) => status,
        };
        let shards: Vec<Value> = status
            .shards
            .iter()
            .map(|s| {
                let shard = s.shard.as_ref();
                json!({
                    "shard_id": shard.map(|d| d.id),
                    "start": shard.map(|d| self.text(&d.start)),
                    "end": shard.map(|d| self.text(&d.end)),
                    "epoch": shard.and_then(|d| d.epoch).map(|e| json!({ "version": e.version, "conf_ver": e.conf_ver })),
                    "role": s.role,
                    "term": s.term,
                    "leader_id": s.leader_id,
                    "last_log_index": s.last_log_index,
                    "last_applied": s.last_applied,
                    "snapshot_index": s.snapshot_index,
                    "purged_index": s.purged_index,
                    "asleep": s.asleep,
                })
            })
            .collect();
        json!({
            "endpoint": node.endpoint,
            "reachable": true,
            "node_id": status.node_id,
            "addr": status.addr,
            "now_ms": status.now_ms,
            "shards": shards,
        })
    }
}

/// Left-aligned columns separated by two spaces. Rows may be shorter than
/// the header; their last cell is then not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        // The last cell of a short row spills over; it sets no width.
        let sized = if row.len() < widths.len() {
            row.len().saturating_sub(1)
        } else {
            widths.len()
        };
        for (i, cell) in row.iter().enumerate().take(sized) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_lossy_text() {
        let hex = Printer {
            json: false,
            hex: true,
        };
        assert_eq!(hex.text(b"\x00\xffA"), "00ff41");
        let text = Printer {
            json: false,
            hex: false,
        };
        assert_eq!(text.text(b"ok\xff"), "ok\u{fffd}");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["1".to_string(), "leader".to_string()],
            vec!["22".to_string(), "f".to_string()],
        ];
        assert_eq!(
            table(&["ID", "ROLE"], &rows),
            "ID  ROLE\n1   leader\n22  f\n"
        );
    }
}
