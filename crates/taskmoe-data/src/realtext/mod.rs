//! What the real-text benchmarks ([`crate::wordnet`], [`crate::pydocs`]) share: the shape of
//! their task tables ([`Role`], [`TaskDef`]), the registry TOML written from such a table, and
//! the balanced, hash-ordered selection of each label's examples into the split files.

mod fingerprint;
mod registry;
mod select;
mod task;

pub(crate) use fingerprint::{split_by_bucket, DEV_BUCKETS, TRAIN_BUCKETS};
pub(crate) use registry::registry_toml;
pub use select::SPLIT_FILES;
pub(crate) use select::{split_files, task_table_header, SplitFiles, SplitSource};
pub use task::{ClassDef, Role, TaskDef};
