//! A small linearizability checker (Wing & Gong 1993, with Lowe's memoizing
//! of visited configurations), and the recorder that makes histories.
//!
//! A history is a list of completed calls, each with the logical time of its
//! call and of its return, taken from one shared atomic clock (so a call that
//! returned before another was called has the smaller return time). The
//! history is linearizable if some total order of the calls respects that
//! real-time order and, replayed on the sequential specification, gives
//! every call the result it actually returned.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::xorshift;

/// A sequential specification: the state and one step of it.
pub(crate) trait Spec: Clone + Eq + Hash {
    type Op: Debug + Clone;
    type Ret: Debug + PartialEq + Clone;
    fn apply(&mut self, op: &Self::Op) -> Self::Ret;
}

/// One completed call.
#[derive(Debug, Clone)]
pub(crate) struct Event<Op, Ret> {
    pub(crate) thread: usize,
    pub(crate) op: Op,
    pub(crate) ret: Ret,
    pub(crate) call: u64,
    pub(crate) returned: u64,
}

/// The shared logical clock of one recorded run.
#[derive(Default)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    /// Runs `f` as call `op` of `thread`, recording its call and return times.
    pub(crate) fn record<Op, Ret>(
        &self,
        thread: usize,
        op: Op,
        f: impl FnOnce(&Op) -> Ret,
    ) -> Event<Op, Ret> {
        // SeqCst: the clock's order must agree with real time across threads.
        let call = self.0.fetch_add(1, Ordering::SeqCst);
        let ret = f(&op);
        let returned = self.0.fetch_add(1, Ordering::SeqCst);
        Event {
            thread,
            op,
            ret,
            call,
            returned,
        }
    }
}

/// How many recorded runs to make, and of what size.
pub(crate) struct Runs {
    pub(crate) rounds: usize,
    pub(crate) threads: usize,
    pub(crate) per_thread: usize,
    /// Added to each thread's seed: the seeds of the structure's history.
    pub(crate) seed: u64,
}

/// Makes `runs.rounds` recorded runs: each on a fresh subject from `new`,
/// `runs.threads` threads started together, each making `runs.per_thread`
/// calls; call `i` of thread `t` is `gen(r, t, i)` for a fresh random word
/// `r`, and `apply` performs it. Each history is checked against `init`;
/// `after` gets the subject once its threads are done (to check its
/// invariants). Returns the first failure, naming its round.
pub(crate) fn run_rounds<S, T>(
    init: &S,
    runs: &Runs,
    new: impl Fn() -> T,
    gen: fn(u64, usize, usize) -> S::Op,
    apply: fn(&T, &S::Op) -> S::Ret,
    mut after: impl FnMut(T),
) -> Result<(), String>
where
    S: Spec,
    S::Op: Send + 'static,
    S::Ret: Send + 'static,
    T: Send + Sync + 'static,
{
    for round in 0..runs.rounds {
        let subject = Arc::new(new());
        let clock = Arc::new(Clock::default());
        let barrier = Arc::new(Barrier::new(runs.threads));
        let (threads, per_thread) = (runs.threads, runs.per_thread);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (subject, clock, barrier) = (subject.clone(), clock.clone(), barrier.clone());
                let mut seed = (round * threads + t) as u64 * 0x9E37_79B9 + runs.seed;
                thread::spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            let op = gen(xorshift(&mut seed), t, i);
                            clock.record(t, op, |op| apply(&subject, op))
                        })
                        .collect::<Vec<Event<S::Op, S::Ret>>>()
                })
            })
            .collect();
        let history: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("a recorded thread panicked"))
            .collect();
        check(init, &history).map_err(|e| format!("round {round}: {e}"))?;
        after(Arc::into_inner(subject).expect("threads joined"));
    }
    Ok(())
}

/// Whether `history` is linearizable with respect to `init`. On failure,
/// returns the history sorted by call time for the error message.
pub(crate) fn check<S: Spec>(init: &S, history: &[Event<S::Op, S::Ret>]) -> Result<(), String> {
    assert!(
        history.len() <= 128,
        "histories are checked up to 128 calls"
    );
    let mut events = history.to_vec();
    events.sort_by_key(|e| e.call);
    let mut seen: HashSet<(u128, S)> = HashSet::new();
    if search(&events, 0, init.clone(), &mut seen) {
        Ok(())
    } else {
        Err(format!("not linearizable: {events:#?}"))
    }
}

/// Depth-first search over the calls not yet linearized (`done` bit set).
fn search<S: Spec>(
    events: &[Event<S::Op, S::Ret>],
    done: u128,
    state: S,
    seen: &mut HashSet<(u128, S)>,
) -> bool {
    if done.count_ones() as usize == events.len() {
        return true;
    }
    if !seen.insert((done, state.clone())) {
        return false;
    }
    // A pending call may go next only if it was called before every pending
    // call returned: otherwise some pending call precedes it in real time.
    let first_return = events
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .map(|(_, e)| e.returned)
        .min()
        .expect("a pending call");
    for (i, e) in events.iter().enumerate() {
        if done & (1 << i) != 0 || e.call > first_return {
            continue;
        }
        let mut next = state.clone();
        if next.apply(&e.op) == e.ret && search(events, done | (1 << i), next, seen) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    //! The checker itself, on histories whose answer is known.
    use super::*;

    /// A set of small integers.
    #[derive(Clone, PartialEq, Eq, Hash, Default)]
    struct Set(u64);

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Contains(u8),
    }

    impl Spec for Set {
        type Op = Op;
        type Ret = bool;
        fn apply(&mut self, op: &Op) -> bool {
            match *op {
                Op::Insert(k) => {
                    let had = self.0 & (1 << k) != 0;
                    self.0 |= 1 << k;
                    !had
                }
                Op::Contains(k) => self.0 & (1 << k) != 0,
            }
        }
    }

    fn ev(thread: usize, op: Op, ret: bool, call: u64, returned: u64) -> Event<Op, bool> {
        Event {
            thread,
            op,
            ret,
            call,
            returned,
        }
    }

    #[test]
    fn accepts_overlapping_calls_in_either_order() {
        // contains(1) overlaps insert(1): false and true are both fine.
        for seen in [false, true] {
            let h = [
                ev(0, Op::Insert(1), true, 0, 3),
                ev(1, Op::Contains(1), seen, 1, 2),
            ];
            assert!(check(&Set::default(), &h).is_ok());
        }
    }

    #[test]
    fn rejects_a_stale_read_after_the_write_returned() {
        // insert(1) returned before contains(1) was called, which still
        // reports it absent: no order explains that.
        let h = [
            ev(0, Op::Insert(1), true, 0, 1),
            ev(1, Op::Contains(1), false, 2, 3),
        ];
        assert!(check(&Set::default(), &h).is_err());
    }

    #[test]
    fn rejects_two_successful_inserts_of_one_key() {
        let h = [
            ev(0, Op::Insert(1), true, 0, 3),
            ev(1, Op::Insert(1), true, 1, 2),
        ];
        assert!(check(&Set::default(), &h).is_err());
    }
}
