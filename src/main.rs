//! The `mandate` command: parses arguments and dispatches to a subcommand.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mandate::cli::main()
}
