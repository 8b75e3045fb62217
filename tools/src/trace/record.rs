//! Recordings of real programs: the raw log the preloadable library writes
//! (`VVMALLOC_TRACE=/path/file`), and its conversion into a [`Trace`].
//!
//! Recording must be cheap, so the library does not keep the trace's block
//! ids: each thread appends fixed-size binary [`Record`]s (addresses, sizes
//! and a global sequence number) to a buffer of its own and writes the
//! buffer out when it fills. [`convert`] then puts the records in sequence
//! order and turns addresses into block ids (`mdriver convert` is the
//! command).
//!
//! The sequence numbers come from one counter, taken *before* a block is
//! freed and *after* it is allocated, so a block freed by one thread and
//! handed to another by the allocator is freed first in the sequence. A
//! `realloc` that may move takes one number before and one after: the old
//! block is freed at the first and the new one exists from the second.
//!
//! A program's first requests (made by the dynamic loader and the C library
//! before the recorder starts), the requests between a `fork` and an `exec`,
//! and what a thread still holds in its buffer when the process ends by
//! `_exit` or a signal are not recorded: the conversion drops a free of a
//! block it never saw allocated and counts it in [`Converted`].
//!
//! ```
//! use vvmalloc_tools::trace::record::{convert, Record, MAGIC};
//!
//! let mut raw = MAGIC.to_vec();
//! for r in [
//!     Record::alloc(1, 0, 0x1000, 24),
//!     Record::realloc(2, 4, 1, 0x1000, 0x2000, 100),
//!     Record::free(5, 1, 0x2000),
//!     Record::free(6, 0, 0x9999), // never seen allocated: dropped
//! ] {
//!     raw.extend_from_slice(&r.to_bytes());
//! }
//! let (trace, c) = convert("prog", &raw).unwrap();
//! assert_eq!(trace.to_text().lines().skip(4).collect::<Vec<_>>(), ["a 0 24", "r 0 100 @1", "f 0 @1"]);
//! assert_eq!(c.unknown_frees, 1);
//! ```

use std::collections::HashMap;

use super::{Trace, TraceError, MAX_THREADS};

/// The first bytes of a raw recording.
pub const MAGIC: &[u8; 16] = b"vvmalloc-raw-v1\n";

/// A record's kind: an allocation.
pub const ALLOC: u32 = 0;
/// A record's kind: a free.
pub const FREE: u32 = 1;
/// A record's kind: a reallocation of a live block to a non-zero size.
pub const REALLOC: u32 = 2;

/// One request, as the recorder writes it (48 bytes, little-endian on disk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Record {
    /// The sequence number: after an allocation, before a free, before a
    /// reallocation.
    pub seq: u64,
    /// For a reallocation, the sequence number taken after it.
    pub seq2: u64,
    /// `ALLOC`, `FREE` or `REALLOC`.
    pub kind: u32,
    /// The recording thread (a small number, reused after a thread exits).
    pub thread: u32,
    /// The block (the old block of a reallocation).
    pub addr: u64,
    /// The new block of a reallocation.
    pub addr2: u64,
    /// The size asked for.
    pub size: u64,
}

/// Bytes of a [`Record`] on disk.
pub const RECORD_BYTES: usize = 48;

impl Record {
    /// An allocation of `size` bytes at `addr`.
    pub const fn alloc(seq: u64, thread: u32, addr: u64, size: u64) -> Self {
        Self {
            seq,
            seq2: seq,
            kind: ALLOC,
            thread,
            addr,
            addr2: 0,
            size,
        }
    }

    /// A free of the block at `addr`.
    pub const fn free(seq: u64, thread: u32, addr: u64) -> Self {
        Self {
            seq,
            seq2: seq,
            kind: FREE,
            thread,
            addr,
            addr2: 0,
            size: 0,
        }
    }

    /// A reallocation of the block at `addr` to `size` bytes at `addr2`.
    pub const fn realloc(
        seq: u64,
        seq2: u64,
        thread: u32,
        addr: u64,
        addr2: u64,
        size: u64,
    ) -> Self {
        Self {
            seq,
            seq2,
            kind: REALLOC,
            thread,
            addr,
            addr2,
            size,
        }
    }

    /// The record on disk.
    pub fn to_bytes(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq2.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b[20..24].copy_from_slice(&self.thread.to_le_bytes());
        b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        b[32..40].copy_from_slice(&self.addr2.to_le_bytes());
        b[40..48].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    /// A record read from disk.
    pub fn from_bytes(b: &[u8; RECORD_BYTES]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        Self {
            seq: u64_at(0),
            seq2: u64_at(8),
            kind: u32_at(16),
            thread: u32_at(20),
            addr: u64_at(24),
            addr2: u64_at(32),
            size: u64_at(40),
        }
    }
}

/// What [`convert`] did with a recording's records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Converted {
    /// Records read.
    pub records: usize,
    /// Frees (and reallocations) of blocks never seen allocated: dropped
    /// (a reallocation of one becomes an allocation).
    pub unknown_frees: usize,
    /// Allocations at an address still live in the recording (its free was
    /// not recorded): the old block is freed first.
    pub lost_frees: usize,
}

/// Turns a raw recording into a trace named `name`. Errors name the record
/// (1-based) that is malformed; a truncated last record (a process killed
/// while writing) is ignored.
pub fn convert(name: &str, raw: &[u8]) -> Result<(Trace, Converted), TraceError> {
    let err = |line: usize, message: String| TraceError {
        file: name.to_string(),
        line,
        message,
    };
    if raw.len() < MAGIC.len() || &raw[..MAGIC.len()] != MAGIC {
        return Err(err(0, "not a vvmalloc recording (bad magic)".into()));
    }
    let body = &raw[MAGIC.len()..];
    let mut c = Converted::default();
    // (sequence number, part, record index): a reallocation has two parts.
    let mut events = Vec::new();
    let mut records = Vec::with_capacity(body.len() / RECORD_BYTES);
    for (i, chunk) in body.chunks_exact(RECORD_BYTES).enumerate() {
        let r = Record::from_bytes(chunk.try_into().unwrap_or(&[0; RECORD_BYTES]));
        match r.kind {
            ALLOC | FREE => events.push((r.seq, 0u8, i)),
            REALLOC => {
                events.push((r.seq, 0, i));
                events.push((r.seq2, 1, i));
            }
            k => return Err(err(i + 1, format!("record {}: unknown kind {k}", i + 1))),
        }
        if r.size > super::MAX_SIZE as u64 {
            return Err(err(
                i + 1,
                format!("record {}: size {} is too large", i + 1, r.size),
            ));
        }
        records.push(r);
    }
    c.records = records.len();
    events.sort_unstable();
    let mut live: HashMap<u64, u64> = HashMap::new();
    // The block id of each reallocation between its two parts.
    let mut moving: HashMap<usize, Option<u64>> = HashMap::new();
    let mut next_id = 0u64;
    let mut text = String::new();
    let line = |text: &mut String, op: std::fmt::Arguments<'_>, thread: u32| {
        use std::fmt::Write;
        let _ = text.write_fmt(op);
        let t = thread % MAX_THREADS;
        if t != 0 {
            let _ = write!(text, " @{t}");
        }
        text.push('\n');
    };
    for (_, part, i) in events {
        let r = records[i];
        match (r.kind, part) {
            (ALLOC, _) => {
                if let Some(old) = live.remove(&r.addr) {
                    c.lost_frees += 1;
                    line(&mut text, format_args!("f {old}"), r.thread);
                }
                live.insert(r.addr, next_id);
                line(&mut text, format_args!("a {next_id} {}", r.size), r.thread);
                next_id += 1;
            }
            (FREE, _) => match live.remove(&r.addr) {
                Some(id) => line(&mut text, format_args!("f {id}"), r.thread),
                None => c.unknown_frees += 1,
            },
            (_, 0) => {
                let id = live.remove(&r.addr);
                if id.is_none() {
                    c.unknown_frees += 1;
                }
                moving.insert(i, id);
            }
            (_, _) => {
                if let Some(old) = live.remove(&r.addr2) {
                    c.lost_frees += 1;
                    line(&mut text, format_args!("f {old}"), r.thread);
                }
                match moving.remove(&i).flatten() {
                    Some(id) => {
                        live.insert(r.addr2, id);
                        line(&mut text, format_args!("r {id} {}", r.size), r.thread);
                    }
                    None => {
                        live.insert(r.addr2, next_id);
                        line(&mut text, format_args!("a {next_id} {}", r.size), r.thread);
                        next_id += 1;
                    }
                }
            }
        }
    }
    Trace::parse(name, &text).map(|t| (t, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(records: &[Record]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        for r in records {
            v.extend_from_slice(&r.to_bytes());
        }
        v
    }

    #[test]
    fn records_round_trip_through_bytes() {
        let r = Record::realloc(1, 2, 3, 4, 5, 6);
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
    }

    #[test]
    fn a_block_freed_by_one_thread_and_reused_by_another_is_ordered_by_sequence() {
        // Written out of order (per-thread buffers): thread 1's buffer first.
        let t = raw(&[
            Record::alloc(3, 1, 0x10, 8),
            Record::free(4, 1, 0x10),
            Record::alloc(1, 0, 0x10, 16),
            Record::free(2, 0, 0x10),
        ]);
        let (trace, c) = convert("x", &t).unwrap();
        let lines: Vec<_> = trace.to_text().lines().skip(4).map(String::from).collect();
        assert_eq!(lines, ["a 0 16", "f 0", "a 1 8 @1", "f 1 @1"]);
        assert_eq!(
            c,
            Converted {
                records: 4,
                ..Converted::default()
            }
        );
    }

    #[test]
    fn a_moving_realloc_frees_its_old_block_at_its_first_number() {
        // Thread 0 reallocates 0x10 -> 0x20 (numbers 2 and 5); meanwhile
        // thread 1 gets 0x10 (number 3).
        let t = raw(&[
            Record::alloc(1, 0, 0x10, 8),
            Record::realloc(2, 5, 0, 0x10, 0x20, 64),
            Record::alloc(3, 1, 0x10, 8),
        ]);
        let (trace, _) = convert("x", &t).unwrap();
        let lines: Vec<_> = trace.to_text().lines().skip(4).map(String::from).collect();
        assert_eq!(lines, ["a 0 8", "a 1 8 @1", "r 0 64"]);
    }

    #[test]
    fn lost_and_unknown_frees_are_counted_not_fatal() {
        let t = raw(&[
            Record::free(1, 0, 0x10),
            Record::alloc(2, 0, 0x20, 8),
            Record::alloc(3, 0, 0x20, 8),
            Record::realloc(4, 5, 0, 0x30, 0x40, 8),
        ]);
        let (trace, c) = convert("x", &t).unwrap();
        assert_eq!((c.unknown_frees, c.lost_frees), (2, 1));
        let lines: Vec<_> = trace.to_text().lines().skip(4).map(String::from).collect();
        assert_eq!(lines, ["a 0 8", "f 0", "a 1 8", "a 2 8"]);
    }

    #[test]
    fn malformed_recordings_are_errors_with_the_record_named() {
        assert_eq!(
            convert("x", b"hello").unwrap_err().to_string(),
            "x:0: not a vvmalloc recording (bad magic)"
        );
        let mut bad = Record::alloc(1, 0, 0x10, 8);
        bad.kind = 7;
        let e = convert("x", &raw(&[Record::alloc(0, 0, 0x20, 8), bad])).unwrap_err();
        assert_eq!(e.to_string(), "x:2: record 2: unknown kind 7");
        // A truncated last record is ignored.
        let mut t = raw(&[Record::alloc(1, 0, 0x10, 8)]);
        t.extend_from_slice(&[1, 2, 3]);
        assert_eq!(convert("x", &t).unwrap().0.ops().len(), 1);
    }
}
