//! Routes one batch of token states from 3 tasks through a `per-task` router (one gate matrix
//! per task over 6 shared experts, top-2) and prints, for each task, the share of its routing
//! slots that went to each expert, then the batch's aux losses.
//!
//! Run with `cargo run -p taskmoe-router --example expert_shares`.

use taskmoe_kernels::stats::task_expert_counts;
use taskmoe_router::{AuxLosses, Router, RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

const TASKS: usize = 3;
const EXPERTS: usize = 6;
const D_MODEL: usize = 16;
const TOKENS: i64 = 600;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let cfg = RouterConfig {
        kind: RouterKind::PerTask,
        num_experts: EXPERTS,
        k: 2,
        ..RouterConfig::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let router = Router::new(vs.root() / "router", &cfg, D_MODEL, TASKS)?;
    // A fresh router starts near uniform (gates drawn at N(0, 0.02^2)); sharpen the gates so
    // that each task's own preferences show, as they would after some training.
    tch::no_grad(|| {
        let mut gates = vs.variables()["router.weight"].shallow_clone();
        let _ = gates.normal_(0.0, 0.5);
    });

    // Token states of a mixed batch (token i belongs to task i % 3): a direction all hidden
    // states share plus per-token variation. Each task's gate scores the shared part its own
    // way, so the tasks prefer different experts.
    let shared = Tensor::randn([1, D_MODEL as i64], (Kind::Float, Device::Cpu));
    let x = shared + 0.5 * Tensor::randn([TOKENS, D_MODEL as i64], (Kind::Float, Device::Cpu));
    let tasks = Tensor::arange(TOKENS, (Kind::Int64, Device::Cpu)).remainder(TASKS as i64);
    let out = router.forward(&x, &tasks, false)?;

    // Routing slots (token, choice) of each task that chose each expert. [tasks, E]
    let counts = task_expert_counts(&out.routed.experts, &tasks, TASKS, EXPERTS)?;
    let counts: Vec<Vec<i64>> = (0..TASKS as i64)
        .map(|t| Vec::try_from(&counts.get(t)))
        .collect::<Result<_, _>>()?;
    print!("expert shares  ");
    for e in 0..EXPERTS {
        print!("   e{e}");
    }
    println!();
    for (task, row) in counts.iter().enumerate() {
        let slots: i64 = row.iter().sum();
        print!("task {task}         ");
        for &c in row {
            print!(" {:4.2}", c as f64 / slots as f64);
        }
        println!("   ({slots} slots)");
    }

    let aux = AuxLosses::compute(&out, &tasks, TASKS)?;
    println!(
        "load balance {:.3} (1 = balanced, {EXPERTS} = collapsed), z-loss {:.3}, \
         task-expert mutual information {:.3}",
        aux.load_balance.double_value(&[]),
        aux.z_loss.double_value(&[]),
        aux.mutual_information.double_value(&[])
    );
    Ok(())
}
