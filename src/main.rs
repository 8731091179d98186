/// jemalloc instead of glibc's malloc. Measured with `bench/run.sh` (list of 50, c=16): glibc
/// with two arenas spent a fifth of the server's CPU in malloc, free and the arena locks the
/// HTTP workers and the database threads contend on; jemalloc's per-thread caches took list
/// throughput from ~3,200 to ~4,650 req/s. glibc with its default arenas instead keeps freed
/// memory resident per thread (RSS several times the live heap); jemalloc returns it after its
/// decay time, so RSS stays near the live heap.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tether::cli::main()
}
