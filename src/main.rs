//! The `mandate` command: parses arguments and dispatches to a subcommand.

#![forbid(unsafe_code)]

/// Small allocations dominate a decision (Cedar's values, names and
/// entity maps); mimalloc serves them from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mandate::cli::main()
}
