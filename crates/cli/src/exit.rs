//! The one place that turns outcomes into exit codes and prints errors.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; for a watched job: it SUCCEEDED |
//! | 1 | the job ended FAILED or KILLED |
//! | 2 | the request was refused (invalid input, unknown job, conflict) |
//! | 3 | the service could not be reached, or failed |

use std::process::ExitCode;

use jobforge_client::ClientError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok,
    JobFailed,
    Refused,
    Internal,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Ok => 0,
            Exit::JobFailed => 1,
            Exit::Refused => 2,
            Exit::Internal => 3,
        })
    }
}

/// Print the error chain (if any) and pick the exit code.
pub fn report(outcome: anyhow::Result<Exit>) -> ExitCode {
    match outcome {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            classify(&err).into()
        }
    }
}

fn classify(err: &anyhow::Error) -> Exit {
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, .. }) if *status < 500 => Exit::Refused,
        Some(ClientError::BadUrl(_)) => Exit::Refused,
        Some(_) => Exit::Internal,
        None if err.downcast_ref::<UsageError>().is_some() => Exit::Refused,
        None => Exit::Internal,
    }
}

/// A mistake in how the command was called (a bad file, a bad `key=value`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
