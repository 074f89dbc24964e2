//! The `mandate` command: parses arguments and dispatches to a subcommand.

#![forbid(unsafe_code)]

// The system allocator, not mimalloc: under the soak's task churn
// mimalloc's retained pages made resident memory creep (BENCHMARKS.md,
// "Task churn"), where glibc's stayed flat.

fn main() -> std::process::ExitCode {
    mandate::cli::main()
}
