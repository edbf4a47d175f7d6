//! The kernel crate's error type.

use thiserror::Error;

/// What can go wrong when a kernel is called.
#[derive(Debug, Error)]
pub enum KernelError {
    /// A tensor argument has the wrong rank or size.
    #[error("{op}: {arg} has shape {got:?}, expected {expected}")]
    Shape {
        /// The kernel that was called.
        op: &'static str,
        /// Which argument.
        arg: &'static str,
        /// Its actual shape.
        got: Vec<i64>,
        /// A description of the expected shape.
        expected: String,
    },
    /// An argument value is out of its allowed range.
    #[error("{op}: {message}")]
    Invalid {
        /// The kernel that was called.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`KernelError`].
pub type Result<T> = std::result::Result<T, KernelError>;

/// Checks that `t` is 2-D and returns its sizes.
pub(crate) fn dims2(op: &'static str, arg: &'static str, t: &tch::Tensor) -> Result<(i64, i64)> {
    match t.size().as_slice() {
        &[a, b] => Ok((a, b)),
        other => Err(KernelError::Shape {
            op,
            arg,
            got: other.to_vec(),
            expected: "a 2-D tensor".into(),
        }),
    }
}

/// Builds a [`KernelError::Invalid`].
pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> KernelError {
    KernelError::Invalid {
        op,
        message: message.into(),
    }
}
