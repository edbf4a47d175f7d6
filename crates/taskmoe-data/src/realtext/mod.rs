//! What the real-text benchmarks ([`crate::wordnet`], [`crate::pydocs`]) share: the shape of
//! their task tables ([`Role`], [`TaskDef`]), the registry TOML written from such a table, and
//! the balanced, hash-ordered selection of each label's examples into the split files.

mod fingerprint;
mod registry;
mod select;
mod task;

pub(crate) use fingerprint::{fnv1a, split_by_bucket, DEV_BUCKETS, FNV_OFFSET, TRAIN_BUCKETS};
pub(crate) use registry::registry_toml;
pub(crate) use select::{pick, task_row, task_table_header};
pub use task::{ClassDef, Role, TaskDef};
