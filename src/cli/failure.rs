//! How client commands end: exit 0 done, 1 refused by the server (policy,
//! an invariant, not found, wrong state), 2 bad usage or no connection.

use std::future::Future;
use std::process::ExitCode;

use tonic::Code;

use super::{EXIT_USAGE, init_logging, runtime};

/// What went wrong, and the exit code it deserves.
pub(super) enum Failure {
    /// Bad usage or no connection: exit 2.
    Usage(String),
    /// The server refused: exit 1.
    Refused(tonic::Status),
}

/// A gRPC error as a [`Failure`]: refusals are the server's answer, the
/// rest are usage or connection problems.
pub(super) fn refused(status: tonic::Status) -> Failure {
    match status.code() {
        Code::PermissionDenied
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::AlreadyExists => Failure::Refused(status),
        _ => Failure::Usage(format!("{}: {}", status.code(), status.message())),
    }
}

/// Runs a client command on a fresh runtime and maps its end to an exit
/// code.
pub(super) fn run_client<F>(command: F) -> ExitCode
where
    F: Future<Output = Result<(), Failure>>,
{
    init_logging("warn");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(status)) => {
            eprintln!("refused ({}): {}", status.code(), status.message());
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
