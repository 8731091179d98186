/// jemalloc instead of glibc's malloc. Measured with `bench/run.sh` (list of 50, c=16): glibc
/// with two arenas spent a fifth of the server's CPU in malloc, free and the arena locks the
/// HTTP workers and the database threads contend on; jemalloc's per-thread caches took list
/// throughput from ~3,200 to ~4,650 req/s. glibc with its default arenas instead keeps freed
/// memory resident per thread (RSS several times the live heap); jemalloc returns it after its
/// decay time, so RSS stays near the live heap.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (a C string it finds by this symbol name). Two
/// arenas instead of eight (2 cores × 4) and dirty pages returned after 1 s instead of 10 s:
/// RSS at 100k bindings 58 → 56 MB with no measurable change in throughput. Thread caches
/// keep freed blocks of at most 1 KB instead of 32 KB: each of the ~20 threads that render
/// or read (HTTP workers, the blocking pool) otherwise kept megabytes of a list's freed
/// buffers to itself (SQLite, RSS after the scaling stage's list runs: 54.3 → 46.1 MB at 1k
/// bindings, 67.6 → 58.4 MB at 1M; list and create throughput unchanged within the noise,
/// get ~4% lower in two A/B runs). The `_RJEM_MALLOC_CONF` environment variable still
/// overrides it.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[used]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: Option<&'static u8> =
    Some(&b"narenas:2,dirty_decay_ms:1000,tcache_max:1024\0"[0]);

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    tether::cli::main()
}

/// Rust allocations go to jemalloc, but SQLite (C) still calls glibc's malloc for its page
/// caches. glibc gives each thread that allocates its own arena (up to 8 per core), and memory
/// freed in an arena stays resident: with the blocking pool's threads taking turns on database
/// work, RSS grew to several times SQLite's live caches (196 MB at 100k bindings). Two arenas
/// keep it near the live heap at no measurable cost in throughput. An explicit
/// MALLOC_ARENA_MAX still wins.
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
