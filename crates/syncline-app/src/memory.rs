//! Process-wide memory settings for the service binaries.

/// How many malloc arenas every Syncline process uses (services and `syncline-ctl`).
pub const ARENAS: u8 = 2;

/// Cap glibc's malloc at [`ARENAS`] arenas, unless `MALLOC_ARENA_MAX` is set (the
/// operator's choice wins). Call first thing in `main`, before any thread allocates:
/// arenas are created lazily, under contention.
///
/// Why: glibc gives each thread that meets contention its own arena (up to 8 per core),
/// and the consumer's threads (tokio workers, librdkafka's broker threads) allocate and
/// free batch-sized buffers in different threads. The freed memory stays spread over the
/// arenas: in the 1,000,000-event Redis drain the peak RSS was 119 MiB with glibc's
/// default and 90 MiB with two arenas, at the same throughput. Returns whether the limit
/// was applied (never on non-glibc targets, where this does nothing).
pub fn cap_arenas() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max(i32::from(ARENAS))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) -> bool {
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX accepts any positive value
    // and may be set while other threads allocate.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}
