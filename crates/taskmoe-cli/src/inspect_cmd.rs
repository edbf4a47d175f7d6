//! `taskmoe inspect`.

use anyhow::Result;
use taskmoe_experts::ExpertKind;
use taskmoe_model::{param_report, Variant};
use taskmoe_train::{RunConfig, RunData};

use crate::report::spelling;
use crate::ConfigArgs;

/// Prints the parameter report of the configured model and of the other variants with the
/// same settings, so equal active compute can be checked. The trainable count follows the
/// model's own frozen parts (LoRA experts' base FFNs) and `train.freeze_pretrained`.
pub fn run(args: &ConfigArgs) -> Result<()> {
    let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
    let data = RunData::load(&cfg)?;
    let heads = data.heads();
    println!(
        "{} tasks, sequence length {}; configured variant: {}\n",
        heads.len(),
        data.seq_len,
        spelling(&cfg.model.variant)
    );
    for variant in [Variant::Dense, Variant::TokenMoe, Variant::TaskMoe] {
        let model = cfg.model.with_variant(variant);
        let experts = match model.moe.expert_kind {
            ExpertKind::Ffn => String::new(),
            ExpertKind::Lora if variant.is_moe() => format!(
                ", LoRA experts of rank {} on a frozen FFN",
                model.moe.lora_rank
            ),
            ExpertKind::Lora => String::new(),
        };
        println!(
            "== {} (router {}{experts})",
            spelling(&variant),
            spelling(&model.moe.router.kind)
        );
        let mut report = param_report(&model, &heads, data.seq_len);
        if cfg.train.freeze_pretrained {
            report = report.with_frozen_pretrained();
        }
        println!("{report}");
    }
    Ok(())
}
