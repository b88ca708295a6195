//! Training: configuration, batches, the learning-rate schedule, events, and
//! the loop that runs LoRA fine-tuning on its own thread.

pub mod batches;
pub mod checkpoint;
pub mod config;
pub mod events;
pub mod grpo;
pub mod memory;
pub mod optimizer;
pub mod preference;
pub mod recompute;
pub mod rewards;
pub mod schedule;
pub mod trainer;

pub use config::{resolve_config, TrainConfig, PROFILES};
pub use events::{GrpoMetrics, Observer, PreferenceMetrics, TrainEvent};
pub use memory::MemoryEstimate;
pub use optimizer::OptimizerKind;
pub use preference::Method;
pub use trainer::{plan, resume, train, Plan, TrainControl, TrainSummary};
