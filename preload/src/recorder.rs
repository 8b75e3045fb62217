//! Recording a program's requests: `VVMALLOC_TRACE=/path/file`.
//!
//! When the variable is set (and not empty) as the program starts, every
//! `malloc`-family request from then on is appended to
//! `/path/file.<pid>` (one file per process: a program that forks and
//! `exec`s, like a compiler driver, leaves one per process image) as
//! binary records, `vvmalloc_tools::trace::record`'s format; `mdriver convert`
//! turns a file into a trace for the driver.
//!
//! Cost: each thread appends to a buffer of its own (4096 records, mapped
//! outside the heap; taken over by a later thread once its thread exits)
//! under an uncontended flag, plus one shared counter for the sequence
//! numbers; a full buffer is written with one `write`. The buffers of
//! threads still running are written when the process exits through
//! `exit`; an `_exit` or a fatal signal loses what they hold. Not recorded:
//! what a thread frees after its thread-local destructors ran (`pthread`
//! key destructors, which come later), and what shared libraries'
//! destructors do after the final flush; the conversion counts such frees
//! as lost, and the blocks stay live to the end of the trace.

use core::cell::{Cell, UnsafeCell};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicU8, Ordering};

use tools::trace::record::{Record, MAGIC, RECORD_BYTES};

/// Records a buffer holds before it is written.
const CAP: usize = 4096;

/// Recording off (the variable is unset, or the start-up hook has not run).
const OFF: u8 = 0;
/// Recording on.
const ON: u8 = 1;

static STATE: AtomicU8 = AtomicU8::new(OFF);
/// The sequence counter.
static SEQ: AtomicU64 = AtomicU64::new(1);
/// The output file: -1 not opened yet, -2 being opened, else the fd.
static FD: AtomicI32 = AtomicI32::new(-1);
/// Every buffer ever made (a stack linked through `Log::next`, never
/// popped: buffers are reused, not freed).
static LOGS: AtomicPtr<Log> = AtomicPtr::new(ptr::null_mut());
/// Buffers made so far (the next one's thread number).
static NEXT_TID: AtomicU64 = AtomicU64::new(0);

/// The path prefix, NUL-terminated; written once by `start`, before `STATE`
/// is set to `ON` (Release), read after it is seen (Acquire).
struct Path(UnsafeCell<[u8; 4096]>);
// SAFETY: written only by `start` before it publishes `STATE` (see above).
unsafe impl Sync for Path {}
static PATH: Path = Path(UnsafeCell::new([0; 4096]));

/// One thread's buffer.
struct Log {
    /// The next buffer in `LOGS` (immutable once pushed).
    next: *mut Log,
    /// Whether a live thread uses this buffer.
    owned: AtomicBool,
    /// Held while appending or writing the buffer out: by its thread, and
    /// at exit by the thread that writes every buffer.
    lock: AtomicBool,
    /// The thread number of the records.
    tid: u32,
    /// Records buffered (under `lock`).
    len: UnsafeCell<usize>,
    recs: UnsafeCell<[[u8; RECORD_BYTES]; CAP]>,
}

impl Log {
    fn lock(&self) {
        // Acquire: pairs with the Release in `unlock`: the previous holder's
        // writes to the buffer are visible.
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        // Release: see `lock`.
        self.lock.store(false, Ordering::Release);
    }

    /// Writes the buffered records out. Under `lock`.
    fn flush(&self) {
        // SAFETY: under `lock` (contract), the buffer is ours.
        let len = unsafe { &mut *self.len.get() };
        if *len == 0 {
            return;
        }
        if let Some(fd) = file() {
            // SAFETY: as above.
            let recs = unsafe { &*self.recs.get() };
            // SAFETY: `len` records of plain bytes.
            let bytes = unsafe {
                core::slice::from_raw_parts(recs.as_ptr().cast::<u8>(), *len * RECORD_BYTES)
            };
            write_all(fd, bytes);
        }
        *len = 0;
    }
}

/// Writes all of `bytes` to `fd` (an `O_APPEND` file: one `write` is one
/// append), giving up on an error.
fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            // SAFETY: `__errno_location` returns this thread's errno.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// The output file, opened (and truncated, with the header written) on the
/// first write of this process.
fn file() -> Option<i32> {
    loop {
        // Acquire: pairs with the Release store below (the header is
        // written before the fd is published).
        match FD.load(Ordering::Acquire) {
            -2 => core::hint::spin_loop(),
            // Acquire: as above; Relaxed on failure (we loop).
            -1 if FD
                .compare_exchange(-1, -2, Ordering::Acquire, Ordering::Relaxed)
                .is_ok() =>
            {
                let fd = open_output();
                // Release: publishes the fd with the header written.
                FD.store(fd, Ordering::Release);
                return (fd >= 0).then_some(fd);
            }
            -1 => {}
            fd if fd >= 0 => return Some(fd),
            _ => return None,
        }
    }
}

/// Opens `<path>.<pid>`; -3 (never retried) on failure.
fn open_output() -> i32 {
    let mut name = [0u8; 4096 + 24];
    // SAFETY: `PATH` is immutable once recording is on (see `Path`).
    let path = unsafe { &*PATH.0.get() };
    let plen = path.iter().position(|&b| b == 0).unwrap_or(0);
    name[..plen].copy_from_slice(&path[..plen]);
    name[plen] = b'.';
    // SAFETY: no preconditions.
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; 10];
    let mut nd = 0;
    loop {
        digits[nd] = b'0' + (pid % 10) as u8;
        nd += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..nd {
        name[plen + 1 + i] = digits[nd - 1 - i];
    }
    // SAFETY: `name` is NUL-terminated (zeroed beyond what we wrote).
    let fd = unsafe {
        libc::open(
            name.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return -3;
    }
    write_all(fd, MAGIC);
    fd
}

/// This thread's buffer: null before its first record, `DEAD` once handed
/// back at thread exit (nothing is recorded after that).
const DEAD: *mut Log = ptr::dangling_mut::<Log>();

/// Hands the thread's buffer back at thread exit.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // The main thread's thread-locals are destroyed at the start of
        // `exit`, before the atexit handlers and the destructors of static
        // objects, whose requests are still wanted: flush, keep recording
        // (`flush_all` writes the rest).
        // SAFETY: no preconditions.
        if unsafe { libc::gettid() == libc::getpid() } {
            if let Ok(log) = MINE.try_with(Cell::get) {
                if !log.is_null() && log != DEAD {
                    // SAFETY: buffers are never freed.
                    let log = unsafe { &*log };
                    log.lock();
                    log.flush();
                    log.unlock();
                }
            }
            return;
        }
        let log = MINE.with(|m| m.replace(DEAD));
        if !log.is_null() && log != DEAD {
            // SAFETY: buffers are never freed.
            let log = unsafe { &*log };
            log.lock();
            log.flush();
            log.unlock();
            // Release: pairs with the Acquire CAS in `take_log`: the next
            // owner sees the buffer emptied.
            log.owned.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static MINE: Cell<*mut Log> = const { Cell::new(ptr::null_mut()) };
    static SETTING_UP: Cell<bool> = const { Cell::new(false) };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// A free buffer of an exited thread, or a new one.
fn take_log() -> *mut Log {
    // Acquire: pairs with the Release CAS that pushed each buffer.
    let mut l = LOGS.load(Ordering::Acquire);
    while !l.is_null() {
        // SAFETY: buffers are never freed.
        let log = unsafe { &*l };
        // Acquire: pairs with the Release store in `ExitGuard::drop`.
        if !log.owned.load(Ordering::Relaxed)
            && log
                .owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return l;
        }
        l = log.next;
    }
    // SAFETY: an anonymous private mapping of our own.
    let m = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size_of::<Log>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let l = m.cast::<Log>();
    // Relaxed: a counter; the number only has to be unique.
    let tid = NEXT_TID.fetch_add(1, Ordering::Relaxed) as u32;
    // SAFETY: fresh, zeroed, writable memory the size of a `Log`; all-zero
    // is a valid empty buffer, so only the header is written.
    unsafe {
        ptr::addr_of_mut!((*l).owned).write(AtomicBool::new(true));
        ptr::addr_of_mut!((*l).tid).write(tid);
    }
    // Relaxed: re-read by the CAS.
    let mut head = LOGS.load(Ordering::Relaxed);
    loop {
        // SAFETY: not yet shared.
        unsafe { ptr::addr_of_mut!((*l).next).write(head) };
        // Release: publishes the buffer's header to `take_log` and
        // `flush_all`; Relaxed on failure (we retry).
        match LOGS.compare_exchange_weak(head, l, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return l,
            Err(h) => head = h,
        }
    }
}

/// Appends the record `make` builds for this thread's number.
#[inline]
fn push(make: impl FnOnce(u32) -> Record) {
    let Ok(mut log) = MINE.try_with(Cell::get) else {
        return;
    };
    if log.is_null() {
        // A request made while the buffer is being set up (the exit guard's
        // registration may allocate) is not recorded.
        if SETTING_UP.try_with(|s| s.replace(true)) != Ok(false) {
            return;
        }
        log = take_log();
        let _ = MINE.try_with(|m| m.set(if log.is_null() { DEAD } else { log }));
        let _ = EXIT_GUARD.try_with(|_| ());
        let _ = SETTING_UP.try_with(|s| s.set(false));
        if log.is_null() {
            return;
        }
    }
    if log == DEAD {
        return;
    }
    // SAFETY: buffers are never freed.
    let log = unsafe { &*log };
    let rec = make(log.tid).to_bytes();
    log.lock();
    // SAFETY: under `lock`.
    let len = unsafe { &mut *log.len.get() };
    // SAFETY: as above; `*len < CAP` (flushed when it reaches `CAP`).
    unsafe { (*log.recs.get())[*len] = rec };
    *len += 1;
    if *len == CAP {
        log.flush();
    }
    log.unlock();
}

#[inline]
fn on() -> bool {
    // Acquire: pairs with the Release store in `start` (the path is set).
    STATE.load(Ordering::Acquire) == ON
}

#[inline]
fn next_seq() -> u64 {
    // Relaxed: one modification order is all that is needed. A free takes
    // its number before the heap can hand the block to another thread, an
    // allocation after the heap handed it out; the heap orders the two, so
    // coherence orders the numbers.
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Records an allocation of `size` bytes at `p`. (The recording itself is
/// out of line: inlined, it made `malloc` and `free` save registers and
/// reserve a stack frame on every call, recording or not.)
#[inline]
pub(crate) fn alloc(p: *mut u8, size: usize) {
    #[cold]
    #[inline(never)]
    fn record(p: *mut u8, size: usize) {
        let seq = next_seq();
        push(|t| Record::alloc(seq, t, p as u64, size as u64));
    }
    if on() {
        record(p, size);
    }
}

/// Records a free of `p`; call before freeing it.
#[inline]
pub(crate) fn free(p: *mut u8) {
    #[cold]
    #[inline(never)]
    fn record(p: *mut u8) {
        let seq = next_seq();
        push(|t| Record::free(seq, t, p as u64));
    }
    if on() {
        record(p);
    }
}

/// The first number of a reallocation; call before it.
#[inline]
pub(crate) fn before_realloc() -> u64 {
    if on() {
        next_seq()
    } else {
        0
    }
}

/// Records a reallocation of `p` to `size` bytes at `q`.
#[inline]
pub(crate) fn realloc(seq: u64, p: *mut u8, q: *mut u8, size: usize) {
    if on() && seq != 0 {
        let seq2 = next_seq();
        push(|t| Record::realloc(seq, seq2, t, p as u64, q as u64, size as u64));
    }
}

/// Writes out every buffer (at exit).
extern "C" fn flush_all() {
    // Acquire: as in `take_log`.
    let mut l = LOGS.load(Ordering::Acquire);
    while !l.is_null() {
        // SAFETY: buffers are never freed.
        let log = unsafe { &*l };
        log.lock();
        log.flush();
        log.unlock();
        l = log.next;
    }
}

/// In a forked child: the buffers hold the parent's records (dropped) and
/// the file is the parent's (the child opens its own on its first write).
extern "C" fn after_fork_child() {
    // Relaxed: only this thread runs in the child now.
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the child's copy of the descriptor, used by nobody else.
        unsafe { libc::close(fd) };
    }
    let mine = MINE.try_with(Cell::get).unwrap_or(ptr::null_mut());
    // Acquire: as in `take_log`.
    let mut l = LOGS.load(Ordering::Acquire);
    while !l.is_null() {
        // SAFETY: buffers are never freed; no other thread exists in the
        // child, so the flags of threads that were mid-append are reset.
        let log = unsafe { &*l };
        // SAFETY: as above.
        unsafe { *log.len.get() = 0 };
        // Relaxed: single-threaded here.
        log.lock.store(false, Ordering::Relaxed);
        // Relaxed: as above.
        log.owned.store(l == mine, Ordering::Relaxed);
        l = log.next;
    }
}

/// Starts recording if `VVMALLOC_TRACE` is set: run by the dynamic loader
/// when it initialises this library, before `main`.
extern "C" fn start() {
    // SAFETY: a NUL-terminated name; at initialisation, before `main`.
    let v = unsafe { libc::getenv(c"VVMALLOC_TRACE".as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: `getenv` returns a NUL-terminated string.
    let bytes = unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes();
    if bytes.is_empty() || bytes.len() >= 4096 {
        return;
    }
    // SAFETY: recording is off, so nobody reads `PATH` yet.
    unsafe { (&mut *PATH.0.get())[..bytes.len()].copy_from_slice(bytes) };
    // SAFETY: functions that live as long as the process.
    unsafe {
        libc::atexit(flush_all);
        libc::pthread_atfork(None, None, Some(after_fork_child));
    }
    // Release: publishes `PATH` to `on`.
    STATE.store(ON, Ordering::Release);
}

#[used]
#[link_section = ".init_array"]
static START: extern "C" fn() = start;
