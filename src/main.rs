fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    tether::cli::main()
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in
/// an arena stays resident: with the blocking pool's threads taking turns on database work, RSS
/// grew to several times the live heap. Two arenas keep it near the live heap at no measurable
/// cost in throughput (bench/RESULTS.md). An explicit MALLOC_ARENA_MAX still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
