//! The trace parser on arbitrary text: it must never panic, an error must
//! name a line of the input, and a parsed trace must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vvmalloc_tools::trace::Trace;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match Trace::parse("fuzz", &text) {
        Err(e) => {
            assert!(e.line >= 1 && e.line <= lines + 1, "{e} (of {lines} lines)");
            assert!(!e.message.is_empty());
        }
        Ok(t) => {
            assert!(t.threads() >= 1);
            // At most one request per line.
            assert!(t.ops().len() <= lines);
            let mut requested = 0usize;
            for op in t.ops() {
                assert!((op.thread as usize) < t.threads(), "{op:?}");
                assert!(op.size <= vvmalloc_tools::trace::MAX_SIZE, "{op:?}");
                requested = requested.saturating_add(op.size);
            }
            // The peak live bytes are bytes some request asked for.
            assert!(
                t.peak_live() <= requested,
                "{} > {requested}",
                t.peak_live()
            );
        }
    }
});
