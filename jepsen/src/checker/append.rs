//! The `append` checker. Each key holds a list, stored as its elements joined by `,`; clients
//! append by reading the list and compare-and-swapping it for the list plus one element, and
//! read it with gets. Every list seen (a get's value, a cas's `previous`, a successful cas's
//! new value) is an observation. The history is invalid if:
//!
//! - *duplicated*: an observed list holds an element twice;
//! - *reordered*: two observed lists of a key are not one a prefix of the other (an
//!   append-only list only ever grows at its end, so all its versions form one chain);
//! - *lost*: an append was acknowledged, yet a read that began after the acknowledgement
//!   returned does not hold its element;
//! - *unexpected*: an observed element that no client ever tried to append.

use std::collections::{BTreeMap, BTreeSet};

use super::Verdict;
use crate::history::Bytes;
use crate::{History, Op, OpKind, OpResult, Outcome};

const NAME: &str = "append";

/// The stored form of a list.
pub fn encode(list: &[String]) -> Vec<u8> {
    list.join(",").into_bytes()
}

/// The list a stored value holds (`None`, absent, is the empty list).
pub fn decode(value: Option<&[u8]>) -> Vec<String> {
    match value {
        None | Some([]) => Vec::new(),
        Some(v) => String::from_utf8_lossy(v)
            .split(',')
            .map(str::to_string)
            .collect(),
    }
}

/// One list seen by one op, from `call` on.
struct Seen<'a> {
    index: usize,
    op: &'a Op,
    list: Vec<String>,
}

/// The element a cas appends, if it is an append (`new` = `expected` + one element).
fn appended(expected: Option<&[u8]>, new: Option<&[u8]>) -> Option<String> {
    let before = decode(expected);
    let mut after = decode(new);
    let last = after.pop()?;
    (after == before).then_some(last)
}

fn show_list(list: &[String]) -> String {
    const TAIL: usize = 8;
    if list.len() <= TAIL {
        format!("[{}]", list.join(" "))
    } else {
        format!(
            "[({} more) … {}] (len {})",
            list.len() - TAIL,
            list[list.len() - TAIL..].join(" "),
            list.len()
        )
    }
}

fn show_op(index: usize, op: &Op) -> String {
    let ret = op.ret.map_or("-".to_string(), |r| r.to_string());
    let what = match (&op.kind, &op.outcome) {
        (OpKind::Cas { key, expected, new }, outcome) => {
            let elem = appended(expected.as_deref(), new.as_deref()).unwrap_or_default();
            let res = match outcome {
                Outcome::Ok(OpResult::Cas {
                    succeeded: true, ..
                }) => "ok".to_string(),
                Outcome::Ok(OpResult::Cas {
                    succeeded: false,
                    previous,
                }) => format!(
                    "compare failed, list was {}",
                    show_list(&decode(previous.clone().flatten().as_deref()))
                ),
                Outcome::Ok(_) => "?".into(),
                Outcome::Failed => "failed".into(),
                Outcome::Indeterminate => "indeterminate".into(),
            };
            format!("append({}, {elem}) -> {res}", Bytes(key))
        }
        (OpKind::Get { key }, Outcome::Ok(OpResult::Get(v))) => {
            format!(
                "read({}) -> {}",
                Bytes(key),
                show_list(&decode(v.as_deref()))
            )
        }
        (kind, _) => format!("{kind:?}"),
    };
    format!("#{index} c{} {what} [{}, {ret}]", op.client, op.call)
}

pub fn check(history: &History) -> Verdict {
    // Per key: observations, acknowledged appends (element → op), attempted elements.
    let mut seen: BTreeMap<&[u8], Vec<Seen>> = BTreeMap::new();
    let mut acked: BTreeMap<&[u8], Vec<(String, usize, &Op)>> = BTreeMap::new();
    let mut attempted: BTreeMap<&[u8], BTreeSet<String>> = BTreeMap::new();
    for (index, op) in history.ops().iter().enumerate() {
        match (&op.kind, &op.outcome) {
            (OpKind::Get { key }, Outcome::Ok(OpResult::Get(v))) => {
                seen.entry(key).or_default().push(Seen {
                    index,
                    op,
                    list: decode(v.as_deref()),
                });
            }
            (OpKind::Cas { key, expected, new }, outcome) => {
                let elem = appended(expected.as_deref(), new.as_deref());
                if let Some(e) = &elem {
                    attempted.entry(key).or_default().insert(e.clone());
                }
                if let Outcome::Ok(OpResult::Cas {
                    succeeded,
                    previous,
                }) = outcome
                {
                    if let Some(prev) = previous {
                        seen.entry(key).or_default().push(Seen {
                            index,
                            op,
                            list: decode(prev.as_deref()),
                        });
                    }
                    if *succeeded {
                        seen.entry(key).or_default().push(Seen {
                            index,
                            op,
                            list: decode(new.as_deref()),
                        });
                        if let Some(e) = elem {
                            acked.entry(key).or_default().push((e, index, op));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    let mut problems: Vec<(&str, Vec<String>)> = Vec::new();
    let mut reads = 0usize;
    for (key, obs) in &seen {
        reads += obs.len();
        // Duplicates.
        if let Some(s) = obs.iter().find(|s| {
            let set: BTreeSet<&String> = s.list.iter().collect();
            set.len() != s.list.len()
        }) {
            let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
            for e in &s.list {
                *counts.entry(e).or_default() += 1;
            }
            let dups: Vec<String> = counts
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(e, n)| format!("{e} x{n}"))
                .collect();
            problems.push((
                "duplicated",
                vec![
                    format!(
                        "key {}: elements {} appear more than once",
                        Bytes(key),
                        dups.join(", ")
                    ),
                    show_op(s.index, s.op),
                ],
            ));
        }
        // Order: sorted by length, each list must be a prefix of the next.
        let mut by_len: Vec<&Seen> = obs.iter().collect();
        by_len.sort_by_key(|s| s.list.len());
        if let Some(w) = by_len
            .windows(2)
            .find(|w| !w[1].list.starts_with(&w[0].list))
        {
            let at = w[0]
                .list
                .iter()
                .zip(&w[1].list)
                .position(|(a, b)| a != b)
                .unwrap_or(w[0].list.len());
            problems.push((
                "reordered",
                vec![
                    format!(
                        "key {}: two reads disagree at position {at} (one is not a prefix of the other)",
                        Bytes(key)
                    ),
                    show_op(w[0].index, w[0].op),
                    show_op(w[1].index, w[1].op),
                ],
            ));
        }
        // Unexpected elements.
        let tried = attempted.get(key);
        if let Some((s, e)) = obs.iter().find_map(|s| {
            s.list
                .iter()
                .find(|e| !tried.is_some_and(|t| t.contains(*e)))
                .map(|e| (s, e))
        }) {
            problems.push((
                "unexpected",
                vec![
                    format!("key {}: element {e} was never appended", Bytes(key)),
                    show_op(s.index, s.op),
                ],
            ));
        }
        // Lost: an acknowledged element missing from a read that began after the ack.
        for (elem, ai, aop) in acked.get(key).into_iter().flatten() {
            let Some(acked_at) = aop.ret else { continue };
            if let Some(s) = obs
                .iter()
                .find(|s| s.op.call > acked_at && !s.list.contains(elem))
            {
                problems.push((
                    "lost",
                    vec![
                        format!(
                            "key {}: acknowledged element {elem} missing from a later read",
                            Bytes(key)
                        ),
                        show_op(*ai, aop),
                        show_op(s.index, s.op),
                    ],
                ));
                break;
            }
        }
    }
    let n_acked: usize = acked.values().map(Vec::len).sum();
    let summary = format!(
        "{} keys, {n_acked} appends acknowledged, {reads} lists observed",
        seen.len()
    );
    if problems.is_empty() {
        return Verdict::valid(NAME, summary);
    }
    let kinds: BTreeSet<&str> = problems.iter().map(|(k, _)| *k).collect();
    let details = problems
        .into_iter()
        .take(8)
        .flat_map(|(kind, lines)| {
            lines.into_iter().enumerate().map(move |(i, l)| {
                if i == 0 {
                    format!("{kind}: {l}")
                } else {
                    format!("  {l}")
                }
            })
        })
        .collect();
    Verdict::invalid(
        NAME,
        format!(
            "{} ({})",
            summary,
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recorder;

    fn l(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn append(rec: &Recorder, c: u64, before: &[&str], elem: &str, ok: bool) {
        let mut after = l(before);
        after.push(elem.into());
        let exp = (!before.is_empty()).then(|| encode(&l(before)));
        let h = rec.invoke(
            c,
            OpKind::cas("a/0", exp.clone(), Some(encode(&after))),
            rec.tick(),
        );
        let out = if ok {
            Outcome::Ok(OpResult::cas(true, exp))
        } else {
            Outcome::Indeterminate
        };
        rec.complete(h, out, rec.tick()).ok();
    }

    fn read(rec: &Recorder, c: u64, list: &[&str]) {
        let h = rec.invoke(c, OpKind::get("a/0"), rec.tick());
        let v = (!list.is_empty()).then(|| encode(&l(list)));
        rec.complete(h, Outcome::Ok(OpResult::Get(v)), rec.tick())
            .ok();
    }

    #[test]
    fn a_growing_list_is_valid() {
        let rec = Recorder::new();
        append(&rec, 1, &[], "1.1", true);
        read(&rec, 2, &["1.1"]);
        append(&rec, 2, &["1.1"], "2.1", true);
        append(&rec, 1, &["1.1", "2.1"], "1.2", false);
        read(&rec, 1, &["1.1", "2.1"]);
        let v = check(&rec.into_history());
        assert!(v.is_valid(), "{}", v.render());
    }

    #[test]
    fn a_lost_acknowledged_append_is_rejected() {
        let rec = Recorder::new();
        append(&rec, 1, &[], "1.1", true);
        append(&rec, 1, &["1.1"], "1.2", true);
        read(&rec, 2, &["1.1"]);
        let v = check(&rec.into_history());
        assert_eq!(v.valid, Some(false));
        assert!(v.summary.contains("lost"), "{}", v.render());
        assert!(v.render().contains("1.2"), "{}", v.render());
    }

    #[test]
    fn a_duplicated_element_is_rejected() {
        let rec = Recorder::new();
        append(&rec, 1, &[], "1.1", true);
        read(&rec, 2, &["1.1", "1.1"]);
        let v = check(&rec.into_history());
        assert!(v.summary.contains("duplicated"), "{}", v.render());
    }

    #[test]
    fn two_reads_in_different_orders_are_rejected() {
        let rec = Recorder::new();
        append(&rec, 1, &[], "1.1", false);
        append(&rec, 2, &[], "2.1", false);
        read(&rec, 3, &["1.1", "2.1"]);
        read(&rec, 3, &["2.1", "1.1"]);
        let v = check(&rec.into_history());
        assert!(v.summary.contains("reordered"), "{}", v.render());
        assert_eq!(v.valid, Some(false));
    }

    #[test]
    fn an_element_nobody_appended_is_rejected() {
        let rec = Recorder::new();
        read(&rec, 3, &["9.9"]);
        let v = check(&rec.into_history());
        assert!(v.summary.contains("unexpected"), "{}", v.render());
    }
}
