//! A MoE layer with a per-task router dropped into a user's own tch model.
//!
//! The model is the user's: an embedding, then `MoeLayer` as a residual feed-forward block,
//! then a linear head, trained with tch's own Adam. The toy task: each example is one word
//! (0..32) of one of 3 tasks, and the class (0..4) is a different function of the word per
//! task, so the tasks pull the experts different ways. The printout shows the loss falling and
//! the layer's aux losses: load balance (1 = balanced), router z-loss and the task-expert
//! mutual information loss (more negative = tasks use more distinct experts).
//!
//! Run with `cargo run -p taskmoe-experts --example moe_in_your_model`.

use taskmoe_experts::{MoeConfig, MoeLayer, MoeOutput};
use taskmoe_router::{RouterConfig, RouterKind};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const WORDS: i64 = 32;
const TASKS: usize = 3;
const CLASSES: i64 = 4;
const D_MODEL: i64 = 32;

/// The user's model: word embedding, a MoE block (residual), a linear head.
struct WordClassifier {
    embed: nn::Embedding,
    moe: MoeLayer,
    head: nn::Linear,
}

impl WordClassifier {
    fn new(p: &nn::Path, moe: &MoeConfig) -> taskmoe_experts::Result<Self> {
        Ok(WordClassifier {
            embed: nn::embedding(p / "embed", WORDS, D_MODEL, Default::default()),
            moe: MoeLayer::new(p / "moe", moe, D_MODEL as usize, TASKS)?,
            head: nn::linear(p / "head", D_MODEL, CLASSES, Default::default()),
        })
    }

    /// Class logits `[B, CLASSES]` of `words: [B]` from tasks `tasks: [B]`, and what the MoE
    /// layer reported (aux losses, routing statistics).
    fn forward(
        &self,
        words: &Tensor,
        tasks: &Tensor,
        train: bool,
    ) -> taskmoe_experts::Result<(Tensor, MoeOutput)> {
        let x = self.embed.forward(words); // [B, d]
        let moe = self.moe.forward(&x, tasks, train)?;
        let logits = self.head.forward(&(x + &moe.y));
        Ok((logits, moe))
    }
}

/// The class of `word` in `task`: task 0 reads the word mod 4, task 1 its high bits, task 2
/// mixes both.
fn labels(words: &Tensor, tasks: &Tensor) -> Tensor {
    let low = words.remainder(CLASSES);
    let high = words.divide_scalar_mode(8, "floor");
    let mixed = (&low + &high).remainder(CLASSES);
    low.where_self(&tasks.eq(0), &high.where_self(&tasks.eq(1), &mixed))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let cfg = MoeConfig {
        router: RouterConfig {
            kind: RouterKind::PerTask,
            num_experts: 4,
            k: 2,
            load_balance_coef: 0.01,
            z_loss_coef: 0.001,
            mutual_information_coef: 0.05,
            ..RouterConfig::default()
        },
        d_ff: 64,
        ..MoeConfig::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = WordClassifier::new(&vs.root(), &cfg)?;
    let mut opt = nn::Adam::default().build(&vs, 1e-2)?;

    println!("step   loss  load-balance  z-loss  mutual-info");
    for step in 0..=60 {
        let words = Tensor::randint(WORDS, [128], (Kind::Int64, Device::Cpu));
        let tasks = Tensor::randint(TASKS as i64, [128], (Kind::Int64, Device::Cpu));
        let (logits, moe) = model.forward(&words, &tasks, true)?;
        let task_loss = logits.cross_entropy_for_logits(&labels(&words, &tasks));
        // The layer's aux losses, weighted by the coefficients of its router configuration.
        opt.backward_step(&(&task_loss + moe.aux.weighted(&cfg.router)));
        if step % 10 == 0 {
            println!(
                "{step:4}  {:5.3}  {:12.3}  {:6.3}  {:11.3}",
                task_loss.double_value(&[]),
                moe.aux.load_balance.double_value(&[]),
                moe.aux.z_loss.double_value(&[]),
                moe.aux.mutual_information.double_value(&[]),
            );
        }
    }

    // Evaluation: no router noise, every word of every task.
    let words = Tensor::arange(WORDS, (Kind::Int64, Device::Cpu)).repeat([TASKS as i64]);
    let tasks = Tensor::arange(TASKS as i64, (Kind::Int64, Device::Cpu))
        .repeat_interleave_self_int(WORDS, 0, None);
    let (logits, moe) = tch::no_grad(|| model.forward(&words, &tasks, false))?;
    let accuracy = logits
        .argmax(-1, false)
        .eq_tensor(&labels(&words, &tasks))
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    println!(
        "accuracy over all {} (word, task) pairs: {accuracy:.3}",
        WORDS * TASKS as i64
    );
    println!("expert load: {:.2?}", moe.stats.routing.load);
    Ok(())
}
