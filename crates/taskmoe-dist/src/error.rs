//! Errors of the distributed layer.

/// What can go wrong setting up a group or running a collective.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A torchrun variable is missing or malformed.
    #[error("distributed environment: `{var}`: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// c10d failed: the message names the rank, the group and the collective.
    #[error("{0}")]
    Collective(String),
    /// A collective was called with arguments that cannot work.
    #[error("rank {rank}: {op}: {reason}")]
    Input {
        /// The calling rank.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A tch call around a collective failed.
    #[error("rank {rank}: {op}: {source}")]
    Torch {
        /// The calling rank.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// The tch error.
        source: tch::TchError,
    },
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, DistError>;
