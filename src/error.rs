//! The crate-wide error: every module's own error converts into it.

/// Any failure lakepipe reports to a user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The lake could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A landing run failed.
    #[error(transparent)]
    Landing(#[from] crate::landing::Error),
    /// A bucket bootstrap could not be run.
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::Error),
    /// The scheduler could not run, record or refused a request.
    #[error(transparent)]
    Scheduler(#[from] crate::scheduler::Error),
}

/// Result with the crate-wide [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
