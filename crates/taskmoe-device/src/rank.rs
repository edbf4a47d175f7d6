//! Which device a process computes on: a configured name, and a rank's share of a node's GPUs.

use tch::Device;

use crate::cuda::{select_device, DeviceRequest};
use crate::error::{DeviceError, Result};

/// [`select_device`] for a device as a configuration names it (`cpu`, `cuda` or `auto`),
/// printing on stderr why `auto` fell back to the CPU: what a command-line program wants.
pub fn select_named(name: &str) -> Result<Device> {
    let selected = select_device(name.parse::<DeviceRequest>()?)?;
    if let Some(note) = &selected.note {
        eprintln!("taskmoe: {note}");
    }
    Ok(selected.device)
}

/// The device of the process with node-local rank `local_rank` in a multi-process job: on
/// CUDA one GPU per process, `cuda:LOCAL_RANK` (torchrun's convention), an error naming both
/// numbers when the node has fewer GPUs; the CPU is shared.
pub fn rank_device(device: Device, local_rank: usize, cuda_devices: usize) -> Result<Device> {
    match device {
        Device::Cuda(_) if local_rank >= cuda_devices => Err(DeviceError::TooFewGpus {
            local_rank,
            cuda_devices,
        }),
        Device::Cuda(_) => Ok(Device::Cuda(local_rank)),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_of_a_cuda_job_takes_the_gpu_of_its_local_rank() {
        assert_eq!(rank_device(Device::Cuda(0), 3, 4).unwrap(), Device::Cuda(3));
        assert_eq!(rank_device(Device::Cpu, 3, 0).unwrap(), Device::Cpu);
        let err = rank_device(Device::Cuda(0), 2, 2).unwrap_err().to_string();
        assert!(
            err.contains("LOCAL_RANK = 2") && err.contains("2 CUDA device"),
            "{err}"
        );
    }
}
