//! The fork gate: large operations held out of a fork.

use super::*;

/// The fork gate: a large operation (`enter`, then a write of the runs it
/// holds, a loom cell) racing a fork (`close`, then the fork's own use of
/// the same state, then `open`). Either the fork waits for the operation to
/// leave, or the operation waits for the fork to end: the two writes are
/// always ordered by happens-before, and both happen.
fn fork_gate_excludes_large_operations() {
    use vvmalloc::heap::ModelForkGate;
    let gate = Arc::new(ModelForkGate::new());
    let runs = Arc::new(loom::cell::UnsafeCell::new(0usize));
    let op = {
        let (gate, runs) = (gate.clone(), runs.clone());
        thread::spawn(move || {
            let _in = gate.enter();
            // SAFETY: the gate keeps the fork out (the property checked).
            runs.with_mut(|r| unsafe { *r += 1 });
        })
    };
    gate.close();
    // SAFETY: as above, from the fork's side.
    runs.with_mut(|r| unsafe { *r += 10 });
    gate.open();
    op.join().unwrap();
    // SAFETY: both threads are done.
    assert_eq!(runs.with(|r| unsafe { *r }), 11);
}

#[test]
fn fork_gate_holds_large_operations_out_of_a_fork() {
    model(fork_gate_excludes_large_operations);
}

/// The seeded bug: `enter` reads the flag before raising its count. A
/// `close` between the two sees no operation in flight, and the
/// operation saw no fork: both write the runs at once.
#[test]
fn seeded_fork_gate_flag_first_is_caught() {
    assert_seeded_race_caught(
        vvmalloc::heap::seeded_fork_gate_bug,
        fork_gate_excludes_large_operations,
    );
}
