//! Optimisation: AdamW with saveable state and gradient clipping.

mod adamw;
mod clip;

pub use adamw::{
    default_decays, AdamW, AdamWConfig, EXP_AVG_PREFIX, EXP_AVG_SQ_PREFIX, NUM_STEPS, STEP_PREFIX,
};
pub use clip::{clip_grad_norm, grad_norm};
