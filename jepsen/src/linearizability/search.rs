//! Wing & Gong's search for a linearization of one key, with Lowe's memoization, as in
//! Porcupine, plus cuts for this register model.
//!
//! Call and return events sit in a doubly linked list in time order. From the head, the search
//! tries each call before the first return: if the op fits the model state, it is linearized
//! (both its events unlinked) and the search restarts from the head. Reaching a return event
//! means that op was due and nothing let it fit: undo the last choice and try the next call
//! after it. The history is linearizable once every completed op is linearized (indeterminate
//! ones left over simply never took effect).
//!
//! Memo: a node is (completed ops linearized, indeterminate ops linearized, state). A node is
//! skipped if a node already entered has the same completed ops and state and a subset of its
//! indeterminate ops: whatever the new node could still do, that one could too, with the extra
//! indeterminate ops moved to the very end (where they cannot fail). This also cuts an
//! indeterminate op that leaves the state as it was. Skipping against a node still being
//! explored is safe: order the nodes from which a linearization exists by (completed ops left,
//! indeterminate ops needed before the next completed one); a skipped node always has an
//! entered node at least as small, so the smallest such node is never skipped and its search
//! makes progress. To meet the smaller nodes first, the search tries completed ops before
//! indeterminate ones.
//!
//! Cuts, each argued where it is applied:
//! - a get or failed cas that fits is taken with no alternative ([`Pass::Free`]);
//! - of identical ops that could go next, only the earliest-returning one is tried
//!   ([`Search::twin_ready`]);
//! - a move that destroys the last possible source of a value some completed op still needs is
//!   not made ([`Search::starves`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::model::{KeyOp, Prepared, Step, Val, ABSENT};
use super::CheckOptions;

pub(super) enum Verdict {
    Linearizable,
    Unknown,
    Stuck(Stuck),
}

/// The deepest point the search reached before a backtrack; ops are history positions.
pub(super) struct Stuck {
    pub(super) prefix: Vec<usize>,
    pub(super) pending: Vec<usize>,
    pub(super) deadline: usize,
    /// Completed ops needing a value that a pending op would have overwritten for good.
    pub(super) starved: Vec<usize>,
}

pub(super) fn run(key: &Prepared, options: &CheckOptions) -> Verdict {
    Search::new(key).run(options)
}

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// A call or return event; index 0 of [`Events`] is the head sentinel.
#[derive(Clone, Copy)]
struct Event {
    op: u32,
    is_call: bool,
    /// For a call, its return event.
    ret: u32,
    prev: u32,
    next: u32,
}

/// Events in time order; linearizing an op unlinks its two events, undoing relinks them in
/// LIFO order (dancing links). Event ids follow time order.
struct Events {
    list: Vec<Event>,
    /// Per op, its call event.
    call_of: Vec<u32>,
}

impl Events {
    fn new(ops: &[KeyOp]) -> Self {
        // Returns after calls at equal times: equal times count as concurrent.
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            order.push((o.call, false, i as u32));
            order.push((o.ret, true, i as u32));
        }
        order.sort_unstable();
        let n = order.len() as u32;
        let mut call_event = vec![NIL; ops.len()];
        let mut events = Vec::with_capacity(order.len() + 1);
        events.push(Event {
            op: NIL,
            is_call: false,
            ret: NIL,
            prev: NIL,
            next: if n > 0 { 1 } else { NIL },
        });
        for (k, &(_, is_ret, op)) in order.iter().enumerate() {
            let id = k as u32 + 1;
            if is_ret {
                let call: usize = call_event[op as usize] as usize;
                events[call].ret = id;
            } else {
                call_event[op as usize] = id;
            }
            events.push(Event {
                op,
                is_call: !is_ret,
                ret: NIL,
                prev: id - 1,
                next: if id < n { id + 1 } else { NIL },
            });
        }
        Events {
            list: events,
            call_of: call_event,
        }
    }

    fn get(&self, e: u32) -> Event {
        self.list[e as usize]
    }

    fn first(&self) -> u32 {
        self.list[HEAD as usize].next
    }

    fn unlink(&mut self, e: u32) {
        let Event { prev, next, .. } = self.get(e);
        self.list[prev as usize].next = next;
        if next != NIL {
            self.list[next as usize].prev = prev;
        }
    }

    fn relink(&mut self, e: u32) {
        let Event { prev, next, .. } = self.get(e);
        self.list[prev as usize].next = e;
        if next != NIL {
            self.list[next as usize].prev = e;
        }
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(self.get(call).ret);
    }

    fn unlift(&mut self, call: u32) {
        self.relink(self.get(call).ret);
        self.relink(call);
    }
}

/// A fixed-size set of op numbers.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn is_subset_of(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

/// Indeterminate-op sets entered for one (completed ops, state) pair.
type Explored = Vec<Bits>;

/// FxHash: the memo hashes many word slices, where SipHash would dominate the search.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Which ops a node tries, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// A completed op that fits and keeps the state (a get, a mismatched cas). If any exists,
    /// it is the only choice tried: it could move to the front of any linearization from here.
    Free,
    /// Other completed ops.
    Completed,
    /// Indeterminate ops.
    Indeterminate,
}

/// One linearized op: its call event, the state before it, and the pass that chose it.
#[derive(Clone, Copy, Debug)]
struct Frame {
    call: u32,
    prev: Val,
    pass: Pass,
}

struct Search<'k> {
    ops: &'k [KeyOp],
    /// `ops[..completed]` return, the rest are indeterminate.
    completed: usize,
    events: Events,
    /// Linearized completed ops, by op number.
    done: Bits,
    /// Linearized indeterminate ops, by op number minus `completed`.
    maybe: Bits,
    state: Val,
    /// Completed ops not yet linearized.
    remaining: usize,
    /// The linearized ops, in order.
    stack: Vec<Frame>,
    /// The first return event: ops whose call comes before it are the candidates.
    frontier: u32,
    /// Per value: completed ops not yet linearized that need the state to hold it.
    needed_by: Vec<u32>,
    /// Per value: ops not yet linearized that may write it.
    writers: Vec<u32>,
    memo: HashMap<(Bits, Val), Explored, BuildHasherDefault<FxHasher>>,
    memo_bytes: usize,
}

impl<'k> Search<'k> {
    fn new(key: &'k Prepared) -> Self {
        let ops = &key.ops[..];
        let mut search = Search {
            ops,
            completed: key.completed,
            events: Events::new(ops),
            done: Bits::new(key.completed),
            maybe: Bits::new(ops.len() - key.completed),
            state: ABSENT,
            remaining: key.completed,
            stack: Vec::new(),
            frontier: NIL,
            needed_by: vec![0; key.values],
            writers: vec![0; key.values],
            memo: HashMap::default(),
            memo_bytes: 0,
        };
        for op in 0..ops.len() {
            search.count(op, 1);
        }
        search.remember(ABSENT);
        search.find_frontier();
        search
    }

    fn find_frontier(&mut self) {
        let mut e = self.events.first();
        while e != NIL && self.events.get(e).is_call {
            e = self.events.get(e).next;
        }
        self.frontier = e;
    }

    /// Adds `delta` to the needs and writes of `op` (-1 when it is linearized).
    fn count(&mut self, op: usize, delta: i32) {
        let step = self.ops[op].step;
        if let Some(v) = step.needs().filter(|_| op < self.completed) {
            self.needed_by[v as usize] = self.needed_by[v as usize].saturating_add_signed(delta);
        }
        if let Some(v) = step.writes() {
            self.writers[v as usize] = self.writers[v as usize].saturating_add_signed(delta);
        }
    }

    /// Whether linearizing `op`, moving to state `next`, would leave some completed op needing
    /// a value that is neither the state nor writable by any op left: a dead end however long
    /// the search went on. With unique values this cuts a stale read's branch at once.
    fn starves(&self, op: usize, next: Val) -> bool {
        self.starved_value(op, next).is_some()
    }

    /// The value [`Search::starves`] finds unreachable, if any.
    fn starved_value(&self, op: usize, next: Val) -> Option<Val> {
        let step = self.ops[op].step;
        let need = step.needs().filter(|_| op < self.completed);
        let write = step.writes();
        let starved = |v: Val| {
            v != next
                && self.needed_by[v as usize] > u32::from(need == Some(v))
                && self.writers[v as usize] == u32::from(write == Some(v))
        };
        Some(self.state)
            .filter(|&v| starved(v))
            .or(write.filter(|&v| starved(v)))
    }

    fn run(mut self, options: &CheckOptions) -> Verdict {
        let mut stuck: Option<Stuck> = None;
        let mut steps = 0u64;
        let mut cur = self.events.first();
        let mut pass = Pass::Free;
        while self.remaining > 0 {
            steps += 1;
            if steps > options.max_steps_per_key
                || self.memo_bytes > options.max_cache_bytes_per_key
            {
                return Verdict::Unknown;
            }
            let ev = self.events.get(cur);
            if !ev.is_call {
                // The end of this node's window, for this pass.
                match pass {
                    Pass::Free => pass = Pass::Completed,
                    Pass::Completed => pass = Pass::Indeterminate,
                    Pass::Indeterminate => {
                        // This op was due and nothing let it fit: note how far we got.
                        if stuck
                            .as_ref()
                            .is_none_or(|s| self.stack.len() > s.prefix.len())
                        {
                            stuck = Some(self.snapshot());
                        }
                        let Some(frame) = self.backtrack() else {
                            return Verdict::Stuck(stuck.expect("recorded above"));
                        };
                        cur = self.events.get(frame.call).next;
                        pass = frame.pass;
                        continue;
                    }
                }
                cur = self.events.first();
                continue;
            }
            let op = ev.op as usize;
            let taken = self.is_candidate(op, pass)
                && match self.ops[op].step.apply(self.state) {
                    Some(next) if !self.starves(op, next) && self.enter(op, next) => {
                        self.count(op, -1);
                        self.stack.push(Frame {
                            call: cur,
                            prev: self.state,
                            pass,
                        });
                        self.state = next;
                        self.events.lift(cur);
                        self.find_frontier();
                        if op < self.completed {
                            self.remaining -= 1;
                        }
                        true
                    }
                    Some(_) if pass == Pass::Free => {
                        // A free op taken here leads to a node already covered, so this node
                        // holds nothing new either.
                        let Some(frame) = self.backtrack() else {
                            return Verdict::Stuck(stuck.unwrap_or_else(|| self.snapshot()));
                        };
                        cur = self.events.get(frame.call).next;
                        pass = frame.pass;
                        continue;
                    }
                    _ => false,
                };
            if taken {
                cur = self.events.first();
                pass = Pass::Free;
            } else {
                cur = ev.next;
            }
        }
        Verdict::Linearizable
    }

    /// Whether `pass` considers `op` at all.
    fn is_candidate(&self, op: usize, pass: Pass) -> bool {
        let keeps_state = matches!(self.ops[op].step, Step::Read(_) | Step::CasMismatch { .. });
        (match pass {
            Pass::Free => op < self.completed && keeps_state,
            Pass::Completed => op < self.completed && !keeps_state,
            Pass::Indeterminate => op >= self.completed,
        }) && self.twin_ready(op)
    }

    /// Marks `op` linearized, moving to `state`, if that node is new and not dominated;
    /// otherwise leaves everything as it was and returns false.
    fn enter(&mut self, op: usize, state: Val) -> bool {
        self.mark(op, true);
        if self.remember(state) {
            return true;
        }
        self.mark(op, false);
        false
    }

    /// Records the current op sets with `state`; false if that node is dominated.
    fn remember(&mut self, state: Val) -> bool {
        let explored = self.memo.entry((self.done.clone(), state)).or_default();
        if explored.iter().any(|m| m.is_subset_of(&self.maybe)) {
            return false;
        }
        if explored.is_empty() {
            self.memo_bytes += self.done.0.len() * 8 + 64;
        }
        self.memo_bytes += self.maybe.0.len() * 8 + 24;
        explored.push(self.maybe.clone());
        true
    }

    /// Undoes linearizations back to the last node with choices left, and returns the frame
    /// whose alternatives come next; `None` if there is none. A node whose free op failed has
    /// failed too, so its own frame is undone as well.
    fn backtrack(&mut self) -> Option<Frame> {
        loop {
            let frame = self.stack.pop()?;
            let op = self.events.get(frame.call).op as usize;
            self.mark(op, false);
            self.count(op, 1);
            if op < self.completed {
                self.remaining += 1;
            }
            self.state = frame.prev;
            self.events.unlift(frame.call);
            self.find_frontier();
            if frame.pass != Pass::Free {
                return Some(frame);
            }
        }
    }

    /// Whether no twin before `op` could be taken instead (see [`KeyOp::twin_before`]).
    fn twin_ready(&self, op: usize) -> bool {
        self.ops[op]
            .twin_before
            .is_none_or(|t| self.is_linearized(t) || self.events.call_of[t] > self.frontier)
    }

    fn is_linearized(&self, op: usize) -> bool {
        if op < self.completed {
            self.done.contains(op)
        } else {
            self.maybe.contains(op - self.completed)
        }
    }

    fn mark(&mut self, op: usize, on: bool) {
        let (bits, i) = if op < self.completed {
            (&mut self.done, op)
        } else {
            (&mut self.maybe, op - self.completed)
        };
        if on {
            bits.set(i);
        } else {
            bits.clear(i);
        }
    }

    /// The linearized prefix, the pending calls up to the first return event, and the ops that
    /// kept those calls from fitting by starvation (see [`Search::starves`]).
    fn snapshot(&self) -> Stuck {
        let index_of = |e: u32| self.ops[self.events.get(e).op as usize].index;
        let mut pending = Vec::new();
        let mut starved_values = Vec::new();
        let mut e = self.events.first();
        while self.events.get(e).is_call {
            pending.push(index_of(e));
            let op = self.events.get(e).op as usize;
            if let Some(next) = self.ops[op].step.apply(self.state) {
                starved_values.extend(self.starved_value(op, next));
            }
            e = self.events.get(e).next;
        }
        let starved = if starved_values.is_empty() {
            Vec::new()
        } else {
            (0..self.completed)
                .filter(|&op| !self.done.contains(op))
                .filter(|&op| {
                    let need = self.ops[op].step.needs();
                    need.is_some_and(|v| starved_values.contains(&v))
                })
                .map(|op| self.ops[op].index)
                .collect()
        };
        Stuck {
            prefix: self.stack.iter().map(|f| index_of(f.call)).collect(),
            pending,
            deadline: index_of(e),
            starved,
        }
    }
}
