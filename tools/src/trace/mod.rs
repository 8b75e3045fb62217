//! Allocation traces: the malloc-lab text format, extended for threads; a
//! seeded generator of workload traces ([`gen`]); and a replayer that runs a
//! trace against any allocator, validating every block ([`replay`]).
//!
//! # The format
//!
//! A trace is text, one request per line, as in the classic malloc lab:
//!
//! ```text
//! 20000      <- optional header lines: single integers (the malloc lab's
//! 2             suggested heap size, id count, request count and weight),
//! 4             read and ignored
//! 1
//! a 0 512    <- allocate 512 bytes as block 0
//! a 1 128
//! r 0 640    <- reallocate block 0 to 640 bytes (contents kept)
//! f 1        <- free block 1
//! f 0
//! ```
//!
//! vvmalloc's extension, backward compatible (every malloc-lab trace is a
//! valid trace, made by one thread): a request may end with `@T`, the
//! (0-based) thread that makes it; without it, thread 0. A block may be
//! freed or reallocated by another thread than the one that allocated it.
//! Blank lines and lines starting with `#` are ignored.
//!
//! The order of the lines is a valid sequential history: each request
//! happens after every earlier request on the same block. The replayer
//! keeps that order per block across threads (a thread that frees a block
//! allocated by another waits until the allocation is done) and per thread,
//! and nothing else, so threads run concurrently.
//!
//! A trace that frees or reallocates a block that is not allocated, or
//! allocates a block that is still live, is rejected when parsed, with the
//! file, line and problem named:
//!
//! ```
//! use vvmalloc_tools::trace::Trace;
//!
//! let t = Trace::parse("ok.rep", "a 0 16\nr 0 32 @1\nf 0 @1\n").unwrap();
//! assert_eq!((t.ops().len(), t.threads(), t.peak_live()), (3, 2, 32));
//!
//! let e = Trace::parse("bad.rep", "a 0 16\nf 1\n").unwrap_err();
//! assert_eq!(e.to_string(), "bad.rep:2: f 1: block 1 is not allocated");
//! ```
//!
//! The trace's `seq` and `line` fields are 32-bit: a trace has at most
//! 2^32 - 1 lines.

pub mod gen;
pub mod record;
pub mod replay;

use std::collections::HashMap;
use std::fmt;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `a id size`: allocate.
    Alloc,
    /// `f id`: free.
    Free,
    /// `r id size`: reallocate.
    Realloc,
}

/// One request of a trace, with what the parser worked out about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// What it does.
    pub kind: Kind,
    /// The block (dense: `0..Trace::ids()`, renumbered from the file's ids).
    pub id: u32,
    /// The thread that makes it.
    pub thread: u32,
    /// The new size (`Alloc`, `Realloc`); 0 for `Free`.
    pub size: usize,
    /// The block's size before the request (`Free`, `Realloc`); 0 for
    /// `Alloc`.
    pub old_size: usize,
    /// How many requests on this block come before this one.
    pub seq: u32,
    /// Whether the previous request on this block was made by another
    /// thread (the replayer must wait for it).
    pub waits: bool,
    /// Whether the next request on this block is made by another thread
    /// (the replayer must announce that this one is done).
    pub signals: bool,
    /// The line of the file (1-based).
    pub line: u32,
}

/// A parsed trace. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Trace {
    name: String,
    ops: Vec<Op>,
    ids: usize,
    threads: usize,
    peak_live: usize,
    /// The file's id of each dense id.
    file_ids: Vec<u64>,
}

/// A malformed trace: the file, the line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// The file (or name) the trace came from.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for TraceError {}

/// The largest size a trace may ask for (1 TiB): larger is taken for a typo.
pub const MAX_SIZE: usize = 1 << 40;

/// The most threads a trace may name.
pub const MAX_THREADS: u32 = 4096;

impl Trace {
    /// Parses `text`; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Trace, TraceError> {
        let err = |line: usize, message: String| TraceError {
            file: name.to_string(),
            line,
            message,
        };
        struct Block {
            dense: u32,
            /// Live size, if live.
            live: Option<usize>,
            /// Line of the last request.
            last_line: usize,
            /// Index in `ops` of the last request.
            last_op: usize,
            seq: u32,
        }
        let mut blocks: HashMap<u64, Block> = HashMap::new();
        let mut file_ids = Vec::new();
        let mut ops: Vec<Op> = Vec::new();
        let mut threads = 0u32;
        let (mut live, mut peak_live) = (0usize, 0usize);
        let mut headers = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut fields: Vec<&str> = l.split_whitespace().collect();
            if ops.is_empty() && fields.len() == 1 && fields[0].parse::<u64>().is_ok() {
                headers += 1;
                if headers > 4 {
                    return Err(err(
                        line,
                        format!("{l}: more than 4 header lines (a request is `a id size`, `f id` or `r id size`)"),
                    ));
                }
                continue;
            }
            let mut thread = 0u32;
            if let Some(t) = fields.last().and_then(|f| f.strip_prefix('@')) {
                thread = match t.parse::<u32>() {
                    Ok(t) if t < MAX_THREADS => t,
                    _ => {
                        return Err(err(
                            line,
                            format!("{l}: bad thread `@{t}` (a number below {MAX_THREADS})"),
                        ))
                    }
                };
                fields.pop();
                if fields.is_empty() {
                    return Err(err(line, format!("{l}: expected a request before `@{t}`")));
                }
            }
            let kind = match fields[0] {
                "a" => Kind::Alloc,
                "f" => Kind::Free,
                "r" => Kind::Realloc,
                other => {
                    return Err(err(
                        line,
                        format!("{l}: unknown request `{other}` (expected `a`, `f` or `r`)"),
                    ))
                }
            };
            let want = if kind == Kind::Free { 2 } else { 3 };
            if fields.len() != want {
                let form = match kind {
                    Kind::Alloc => "a <id> <size> [@thread]",
                    Kind::Free => "f <id> [@thread]",
                    Kind::Realloc => "r <id> <size> [@thread]",
                };
                return Err(err(line, format!("{l}: expected `{form}`")));
            }
            let id: u64 = fields[1]
                .parse()
                .map_err(|_| err(line, format!("{l}: bad id `{}` (a number)", fields[1])))?;
            let size: usize = if want == 3 {
                match fields[2].parse::<usize>() {
                    Ok(s) if s <= MAX_SIZE => s,
                    Ok(_) => {
                        return Err(err(
                            line,
                            format!(
                                "{l}: size {} is over the limit of {MAX_SIZE} bytes",
                                fields[2]
                            ),
                        ))
                    }
                    Err(_) => {
                        return Err(err(
                            line,
                            format!("{l}: bad size `{}` (a number of bytes)", fields[2]),
                        ))
                    }
                }
            } else {
                0
            };
            let n_ops = ops.len();
            let b = blocks.entry(id).or_insert_with(|| {
                file_ids.push(id);
                Block {
                    dense: (file_ids.len() - 1) as u32,
                    live: None,
                    last_line: 0,
                    last_op: usize::MAX,
                    seq: 0,
                }
            });
            let old_size = match (kind, b.live) {
                (Kind::Alloc, Some(_)) => {
                    return Err(err(
                        line,
                        format!(
                            "{l}: block {id} is already allocated (last request at line {})",
                            b.last_line
                        ),
                    ))
                }
                (Kind::Alloc, None) => 0,
                (_, Some(s)) => s,
                (_, None) if b.last_op == usize::MAX => {
                    return Err(err(line, format!("{l}: block {id} is not allocated")))
                }
                (_, None) => {
                    return Err(err(
                        line,
                        format!(
                            "{l}: block {id} is not allocated (freed at line {})",
                            b.last_line
                        ),
                    ))
                }
            };
            let waits = b.last_op != usize::MAX && ops[b.last_op].thread != thread;
            if waits {
                ops[b.last_op].signals = true;
            }
            if ops.len() >= u32::MAX as usize || line > u32::MAX as usize {
                return Err(err(
                    line,
                    format!("{l}: too many requests (at most 2^32 - 1)"),
                ));
            }
            live = match (live - old_size).checked_add(size) {
                Some(l) => l,
                None => {
                    return Err(err(
                        line,
                        format!("{l}: the live blocks add up to more than the address space"),
                    ))
                }
            };
            peak_live = peak_live.max(live);
            b.live = (kind != Kind::Free).then_some(size);
            b.last_line = line;
            b.last_op = n_ops;
            let seq = b.seq;
            b.seq += 1;
            threads = threads.max(thread + 1);
            ops.push(Op {
                kind,
                id: b.dense,
                thread,
                size,
                old_size,
                seq,
                waits,
                signals: false,
                line: line as u32,
            });
        }
        Ok(Trace {
            name: name.to_string(),
            ids: file_ids.len(),
            ops,
            threads: threads.max(1) as usize,
            peak_live,
            file_ids,
        })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Trace, TraceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TraceError {
            file: name.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Trace::parse(&name, &text)
    }

    /// The name it was parsed under (the file's path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The requests, in the file's order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The number of distinct blocks (ids).
    pub fn ids(&self) -> usize {
        self.ids
    }

    /// The number of threads (one more than the highest `@T`).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The peak of the bytes live at once, in the file's order.
    pub fn peak_live(&self) -> usize {
        self.peak_live
    }

    /// Blocks left allocated at the end (the replayer frees them).
    pub fn leaked(&self) -> usize {
        let mut live = vec![false; self.ids];
        for op in &self.ops {
            live[op.id as usize] = op.kind != Kind::Free;
        }
        live.iter().filter(|&&l| l).count()
    }

    /// The trace as text, in the format [`parse`](Self::parse) reads, with a
    /// malloc-lab header (suggested heap size = peak live, ids, requests,
    /// weight 1). `@T` is written for threads other than 0.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n1\n", self.peak_live, self.ids, self.ops.len());
        for op in &self.ops {
            let id = self.file_ids[op.id as usize];
            match op.kind {
                Kind::Alloc => s += &format!("a {id} {}", op.size),
                Kind::Free => s += &format!("f {id}"),
                Kind::Realloc => s += &format!("r {id} {}", op.size),
            }
            if op.thread != 0 {
                s += &format!(" @{}", op.thread);
            }
            s.push('\n');
        }
        s
    }
}
