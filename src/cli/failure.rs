//! How client commands end (see [`crate::exit_code`]): 0 done, 1 refused
//! by the server (policy, an invariant, not found, wrong state), 2 bad
//! usage or configuration, 3 the server could not be asked or could not
//! answer (unreachable, unavailable, internal error).

use std::future::Future;
use std::process::ExitCode;

use tonic::Code;

use super::{init_logging, runtime};
use crate::exit_code;

/// What went wrong, and the exit code it deserves.
#[derive(Debug)]
pub(super) enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// The server refused: exit 1.
    Refused(tonic::Status),
    /// The server could not be reached or could not answer: exit 3.
    Unavailable(String),
}

impl Failure {
    /// The exit code.
    pub(super) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => exit_code::USAGE,
            Self::Refused(_) => exit_code::DENY,
            Self::Unavailable(_) => exit_code::FAILURE,
        })
    }

    /// Says what went wrong on stderr and gives the exit code.
    pub(super) fn report(self) -> ExitCode {
        let code = self.exit_code();
        match self {
            Self::Refused(status) => {
                eprintln!("refused ({}): {}", status.code(), status.message());
            }
            Self::Usage(message) => eprintln!("error: {message}"),
            Self::Unavailable(message) => eprintln!("error: {message}"),
        }
        code
    }
}

/// A gRPC error as a [`Failure`]: refusals are the server's answer, a
/// server that cannot answer is a failure, the rest are the caller's.
pub(super) fn refused(status: tonic::Status) -> Failure {
    match status.code() {
        Code::PermissionDenied
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::AlreadyExists => Failure::Refused(status),
        Code::Unavailable
        | Code::Internal
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::DataLoss
        | Code::Cancelled => {
            Failure::Unavailable(format!("{}: {}", status.code(), status.message()))
        }
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
        Err(failure) => failure.report(),
    }
}
