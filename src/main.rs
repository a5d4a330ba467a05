//! The `lakepipe` binary: parses arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc: the batch layer allocates and frees large Arrow buffers
/// from many threads, and glibc keeps the freed memory in per-thread arenas. At 10 M events
/// the batch DAG peaked at 1694 MiB RSS with glibc and 1013 MiB with jemalloc, equally fast
/// (mimalloc: 1600 MiB and slower); see README "Performance".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = lakepipe::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lakepipe::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
