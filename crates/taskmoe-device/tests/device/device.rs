//! Device selection and bf16 autocast, on whatever libtorch the tests run against (CI: the
//! CPU-only one, which has no `libtorch_cuda.so`).

use tch::{Device, Kind, Tensor};

use taskmoe_device::{
    autocast, check_precision, full_precision, is_autocast_enabled, libtorch_lib_dir,
    select_device, DeviceError, DeviceRequest, Precision, CUDA_LIBRARY,
};

/// Whether the libtorch in use has a CUDA half next to its CPU half.
fn has_cuda_half() -> bool {
    libtorch_lib_dir().is_some_and(|d| d.join(CUDA_LIBRARY).exists())
}

#[test]
fn cpu_is_selected_without_touching_cuda() {
    let s = select_device(DeviceRequest::Cpu).unwrap();
    assert_eq!(s.device, Device::Cpu);
    assert!(s.note.is_none());
}

#[test]
fn cuda_without_a_cuda_libtorch_names_the_missing_library() {
    assert!(libtorch_lib_dir().is_some(), "the libtorch in use is found");
    match select_device(DeviceRequest::Cuda) {
        Ok(s) => assert!(s.device.is_cuda()),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(CUDA_LIBRARY), "{text}");
            if has_cuda_half() {
                // Loaded, but no GPU: the message names the driver.
                assert!(text.contains("libcuda.so.1"), "{text}");
            } else {
                assert!(matches!(e, DeviceError::CudaLibrary(_)), "{e:?}");
                assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
            }
        }
    }
}

#[test]
fn auto_falls_back_to_the_cpu_with_a_note() {
    let s = select_device(DeviceRequest::Auto).unwrap();
    if s.device == Device::Cpu {
        let note = s.note.expect("a fallback says why");
        assert!(note.contains(CUDA_LIBRARY), "{note}");
        assert!(note.contains("using the CPU"), "{note}");
    } else {
        assert!(s.device.is_cuda());
    }
}

#[test]
fn names_parse_and_unknown_ones_are_errors() {
    assert_eq!(
        "auto".parse::<DeviceRequest>().unwrap(),
        DeviceRequest::Auto
    );
    let err = "tpu".parse::<DeviceRequest>().unwrap_err().to_string();
    assert!(err.contains("`tpu` is not cpu, cuda or auto"), "{err}");
    assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
    assert!("fp16".parse::<Precision>().is_err());
    assert_eq!(Precision::default(), Precision::Fp32);
    assert_eq!(Precision::Bf16.compute_kind(), Some(Kind::BFloat16));
}

#[test]
fn bf16_autocast_runs_matmuls_in_bf16_on_cpu() {
    // Unseeded draws, but draws all the same: they must not interleave with a seeded test's.
    let _rng = taskmoe_device::lock_global_rng();
    check_precision(Precision::Bf16).unwrap();
    let a = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
    assert!(!is_autocast_enabled(Device::Cpu));
    let inside = autocast(Device::Cpu, Precision::Bf16, || {
        assert!(is_autocast_enabled(Device::Cpu));
        let low = a.matmul(&b);
        // The fp32 island: autocast off, fp32 inputs stay fp32.
        let high = full_precision(|| {
            assert!(!is_autocast_enabled(Device::Cpu));
            a.matmul(&b)
        });
        assert!(
            is_autocast_enabled(Device::Cpu),
            "restored after the island"
        );
        (low, high)
    });
    assert!(!is_autocast_enabled(Device::Cpu), "restored after autocast");
    assert_eq!(inside.0.kind(), Kind::BFloat16);
    assert_eq!(inside.1.kind(), Kind::Float);
    let exact = a.matmul(&b);
    assert_eq!(exact.kind(), Kind::Float);
    assert!(inside.1.equal(&exact));
    let rel = (inside.0.to_kind(Kind::Float) - &exact)
        .abs()
        .max()
        .double_value(&[])
        / exact.abs().max().double_value(&[]);
    assert!(rel < 2e-2, "bf16 matmul relative error {rel}");
    // fp32 precision is a no-op.
    let plain = autocast(Device::Cpu, Precision::Fp32, || a.matmul(&b));
    assert_eq!(plain.kind(), Kind::Float);
}

#[test]
fn autocast_is_restored_after_a_panic() {
    let result = std::panic::catch_unwind(|| {
        autocast(Device::Cpu, Precision::Bf16, || panic!("inside autocast"))
    });
    assert!(result.is_err());
    assert!(!is_autocast_enabled(Device::Cpu));
}
