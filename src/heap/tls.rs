//! One word per thread in the static TLS block, read in two instructions
//! even from a shared library.
//!
//! Rust's `thread_local!` in code linked into a shared library (the
//! preloadable `libvvmalloc.so`, a `cdylib`) uses the general-dynamic TLS
//! model: every access calls `__tls_get_addr`. In the C `malloc`/`free`
//! pair that call, and the `LocalKey` code around it, took about 40% of
//! the time (`perf record` of a 32-byte malloc/free loop, 2026-12-01). The
//! initial-exec model reads a variable at a fixed offset from the thread
//! pointer instead; stable Rust cannot ask for it (`-Z tls-model` is
//! unstable), so on x86-64 Linux the word is defined and read in assembly
//! with an initial-exec relocation (`@GOTTPOFF`), which the linker relaxes
//! to a constant offset in an executable.
//!
//! The price of initial-exec: a library holding such a variable takes room
//! in the static TLS block. A preloaded library, or one a program links
//! against, always gets it; a `dlopen` of `libvvmalloc.so` late in a
//! program's life can fail with "cannot allocate memory in static TLS
//! block" when the C library's reserve (hundreds of bytes) is used up.
//! This one takes 8 bytes.
//!
//! Elsewhere (other targets, Miri) the word is an ordinary thread-local.

#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
mod imp {
    use core::arch::{asm, global_asm};

    // The word: zero-filled in every new thread (`.tbss`). Global and
    // hidden: visible to every object file of the library or program, not
    // exported from it. The name carries the crate's major version, so two
    // versions linked into one program do not collide.
    global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl vvmalloc_0_thread_word",
        ".hidden vvmalloc_0_thread_word",
        ".type vvmalloc_0_thread_word,@object",
        ".size vvmalloc_0_thread_word,8",
        "vvmalloc_0_thread_word:",
        ".zero 8",
        ".popsection",
    );

    /// This thread's word.
    #[inline(always)]
    pub(crate) fn get() -> usize {
        let v: usize;
        // SAFETY: reads the calling thread's copy of the word defined
        // above (its offset from the thread pointer, from the GOT entry
        // the initial-exec relocation fills in).
        unsafe {
            asm!(
                "mov {off}, qword ptr [rip + vvmalloc_0_thread_word@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{off}]",
                off = out(reg) _,
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    /// Sets this thread's word.
    #[inline]
    pub(crate) fn set(v: usize) {
        // SAFETY: writes the calling thread's copy of the word (as in
        // `get`); nothing else lives there.
        unsafe {
            asm!(
                "mov {off}, qword ptr [rip + vvmalloc_0_thread_word@GOTTPOFF]",
                "mov qword ptr fs:[{off}], {v}",
                off = out(reg) _,
                v = in(reg) v,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64", not(miri))))]
mod imp {
    use core::cell::Cell;

    crate::sync::thread_local! {
        static WORD: Cell<usize> = const { Cell::new(0) };
    }

    /// This thread's word.
    #[inline(always)]
    pub(crate) fn get() -> usize {
        WORD.with(Cell::get)
    }

    /// Sets this thread's word.
    #[inline]
    pub(crate) fn set(v: usize) {
        WORD.with(|w| w.set(v));
    }
}

pub(crate) use imp::{get, set};

#[cfg(test)]
mod tests {
    use super::{get, set};

    #[test]
    fn each_thread_has_its_own_word_starting_at_zero() {
        set(7);
        assert_eq!(get(), 7);
        crate::sync::thread::spawn(|| {
            assert_eq!(get(), 0);
            set(9);
            assert_eq!(get(), 9);
        })
        .join()
        .unwrap();
        assert_eq!(get(), 7);
        set(0);
    }
}
