//! The NCCL backend in a group of one on GPU 0: every collective on CUDA tensors, and a CPU
//! tensor staged through the GPU. It needs a build that made the NCCL library (a CUDA libtorch
//! with the CUDA and NCCL headers, see `build.rs`) and a GPU, so it is ignored by default; run
//! it on a GPU machine with `cargo test -p taskmoe-dist --test dist nccl -- --ignored`. (NCCL
//! refuses two ranks on one GPU, so a single-GPU machine cannot run a larger group.)

use std::time::Duration;

use taskmoe_dist::{free_loopback_port, nccl_library, Backend, DistEnv, ProcessGroup};
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs a CUDA build of taskmoe-dist and a GPU: run with --ignored on a GPU machine"]
fn an_nccl_group_of_one_runs_every_collective_on_the_gpu() {
    let library = nccl_library()
        .expect("this build has no NCCL backend (a CPU libtorch, or no CUDA and NCCL headers)");
    taskmoe_device::load_cuda().expect("libtorch_cuda.so");
    assert!(tch::Cuda::is_available(), "no GPU here");
    let env = DistEnv {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".to_string(),
        master_port: free_loopback_port().unwrap(),
        timeout: Duration::from_secs(60),
    };
    let pg = ProcessGroup::connect_with(&env, Backend::Nccl { device: 0 })
        .unwrap_or_else(|e| panic!("NCCL group over {}: {e}", library.display()));
    let gpu = Device::Cuda(0);
    let x = Tensor::arange(6, (Kind::Float, gpu)).reshape([3, 2]);
    let mut sum = x.copy();
    pg.all_reduce_sum(&mut sum).unwrap();
    assert!(sum.equal(&x) && sum.device() == gpu);
    let mut b = x.copy();
    pg.broadcast(&mut b, 0).unwrap();
    assert!(b.equal(&x));
    assert!(pg.all_gather(&x).unwrap().equal(&x.unsqueeze(0)));
    let rows = pg.gather_rows(&x, 0).unwrap().expect("the root");
    assert!(rows.equal(&x) && rows.device() == gpu);
    let moved = pg.all_to_all(&x, &[3], &[3]).unwrap();
    assert!(moved.equal(&x));
    // A CPU tensor goes through the GPU and comes back on the CPU.
    assert_eq!(pg.all_reduce_f64(&[1.5, -2.0]).unwrap(), vec![1.5, -2.0]);
    pg.barrier().unwrap();
    let sub = pg.subgroup("one", &[0]).unwrap().expect("a member");
    assert_eq!(sub.backend(), Backend::Nccl { device: 0 });
    println!("NCCL OK on {}", library.display());
}
