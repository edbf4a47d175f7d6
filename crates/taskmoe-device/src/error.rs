//! Errors of device selection and precision control.

/// What can go wrong choosing a device or a precision.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device name is not `cpu`, `cuda` or `auto`.
    #[error("`{0}` is not cpu, cuda or auto")]
    UnknownDevice(String),
    /// The precision name is not `fp32` or `bf16`.
    #[error("`{0}` is not fp32 or bf16")]
    UnknownPrecision(String),
    /// `libtorch_cuda.so` (or a library it needs) could not be loaded.
    #[error("CUDA was requested but {0}")]
    CudaLibrary(String),
    /// libtorch's CUDA half is loaded, but no device is usable (driver, visibility).
    #[error("CUDA was requested but {0}")]
    NoCudaDevice(String),
    /// A rank of a CUDA job has no GPU of its own on its node.
    #[error(
        "LOCAL_RANK = {local_rank} needs GPU {local_rank}, but this node has {cuda_devices} \
         CUDA device(s): start at most one process per GPU"
    )]
    TooFewGpus {
        /// The rank's index on its node.
        local_rank: usize,
        /// The GPUs the node has.
        cuda_devices: usize,
    },
    /// The libtorch in use does not export the autocast switches bf16 needs.
    #[error("bf16 precision is unavailable: {0}")]
    Precision(String),
}

/// Result with [`DeviceError`].
pub type Result<T> = std::result::Result<T, DeviceError>;
