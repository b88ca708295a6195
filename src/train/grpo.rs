//! GRPO (group-relative policy optimisation, DeepSeekMath): for each prompt
//! of a batch, `group_size` completions are sampled from the current policy
//! with the KV cache, scored by the configured reward functions
//! ([`super::rewards`]), and each completion's advantage is its reward's
//! distance from its group's mean in units of the group's standard
//! deviation. The loss, per completion token, is
//!
//!   −A · π(t)/π_old(t) + kl_coef · (r − log r − 1),  r = π_ref(t)/π(t)
//!
//! with π_old the policy that sampled (one update per batch, so the ratio is
//! 1 and its gradient is ∇log π), averaged over each completion's tokens
//! and then over the completions, as TRL's `grpo` loss. The reference is
//! the base with the adapters left out (one copy of the weights).

use std::time::{Duration, Instant};

use mlx_rs::error::Exception;
use mlx_rs::module::ModuleParameters;
use mlx_rs::{nn, ops, Array};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::batches::{pad_multiple, padded_width, try_make_batch, Row};
use super::checkpoint::{self, LoopState};
use super::config::TrainConfig;
use super::events::{GrpoMetrics, Observer, TrainEvent};
use super::memory::{MemoryEstimate, StepShape};
use super::optimizer::TrainOptimizer;
use super::preference::token_nll;
use super::recompute::{self, Gradients};
use super::rewards::Rewards;
use super::schedule::Schedule;
use super::trainer::{
    cast_for_training, check_memory, clip_by_global_norm, compiled_value_and_grad, compiles_step,
    load_for_training, micro_seed, stop_early, sum_over_ranks, summary, write_checkpoint, Clock,
    RankSetup, TrainControl, TrainSummary, CANCELLED, PAUSED,
};
use crate::data::prompts::{read_prompts, PromptSet, PromptTokens};
use crate::data::{templates, valid_file, Example};
use crate::error::{Error, Result};
use crate::eval::nll_from_hidden;
use crate::generate::{sample_group, GenerateOptions};
use crate::kernels::CrossEntropyRows;
use crate::lora;
use crate::model::Model;

/// The GRPO loss of a batch of completions: [loss, mean per-token KL].
/// `args`: inputs, targets, mask of completion tokens (R, T); advantages
/// (R); the reference's per-token NLL (R, T; zeros when `kl_coef` is 0).
fn loss_from_hidden(
    model: &mut Model,
    hidden: &Array,
    args: &[Array],
    kl_coef: f32,
    differentiated: bool,
) -> std::result::Result<Vec<Array>, Exception> {
    let (targets, mask, advantages, reference_nll) = (&args[1], &args[2], &args[3], &args[4]);
    let rows = CrossEntropyRows {
        mask: Some(mask),
        differentiated,
    };
    let nll = nll_from_hidden(model, hidden, targets, rows)?;
    let logp = nll.negative()?;
    // π/π_old with π_old = π held constant: value 1, gradient ∇log π.
    let ratio = ops::exp(logp.subtract(mlx_rs::stop_gradient(&logp)?)?)?;
    let policy = ratio.multiply(advantages.expand_dims(-1)?)?.negative()?;
    // k3 estimator of KL(π ‖ π_ref): log r = log π_ref − log π = nll − nll_ref.
    let log_r = nll.subtract(reference_nll)?;
    let kl = ops::exp(&log_r)?
        .subtract(&log_r)?
        .subtract(Array::from_f32(1.0))?;
    let per_token = policy.add(kl.multiply(Array::from_f32(kl_coef))?)?;
    let counts = ops::maximum(mask.sum_axis(-1, None)?, Array::from_f32(1.0))?;
    let per_row = per_token
        .multiply(mask)?
        .sum_axis(-1, None)?
        .divide(&counts)?;
    let kl_row = kl.multiply(mask)?.sum_axis(-1, None)?.divide(&counts)?;
    Ok(vec![
        per_row.mean(None)?,
        mlx_rs::stop_gradient(kl_row.mean(None)?)?,
    ])
}

fn grpo_loss(
    kl_coef: f32,
) -> impl FnMut(&mut Model, Vec<Array>) -> std::result::Result<Vec<Array>, Exception> + Clone + 'static
{
    move |model: &mut Model, args: Vec<Array>| {
        let hidden = model.hidden_states(&args[0], None)?;
        loss_from_hidden(model, &hidden, &args, kl_coef, true)
    }
}

/// Group-normalised advantages, as TRL computes them: (r − mean) / (std +
/// 1e-4) within each group of `group` consecutive rewards, with the
/// unbiased standard deviation.
pub fn advantages(rewards: &[f32], group: usize) -> Vec<f32> {
    rewards
        .chunks(group)
        .flat_map(|g| {
            let n = g.len() as f32;
            let mean = g.iter().sum::<f32>() / n;
            let var = g.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (n - 1.0).max(1.0);
            let std = var.sqrt();
            g.iter().map(move |r| (r - mean) / (std + 1e-4))
        })
        .collect()
}

/// The settings GRPO needs to make sense.
fn check_config(config: &TrainConfig) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(m));
    if config.group_size < 2 {
        return bad(format!(
            "group_size must be at least 2 (each completion is compared with its group), got {}",
            config.group_size
        ));
    }
    if config.max_completion_length == 0 {
        return bad("max_completion_length must be at least 1 token".into());
    }
    if config.max_completion_length >= config.max_length {
        return bad(format!(
            "max_completion_length ({}) must be below max_length ({}), which holds the prompt and the completion",
            config.max_completion_length, config.max_length
        ));
    }
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return bad(format!(
            "temperature must be above 0 for GRPO (identical completions teach nothing), got {}",
            config.temperature
        ));
    }
    if !(config.top_p > 0.0 && config.top_p <= 1.0) {
        return bad(format!("top_p must be in (0, 1], got {}", config.top_p));
    }
    if !(config.kl_coef.is_finite() && config.kl_coef >= 0.0) {
        return bad(format!("kl_coef must be 0 or more, got {}", config.kl_coef));
    }
    if config.packing {
        return bad(
            "packing is not available with method grpo: each completion is a row of its own".into(),
        );
    }
    if config.kl_coef > 0.0 && config.lora.full {
        return bad("method grpo's KL penalty compares with the base model, which full fine-tuning changes: train adapters, or set kl_coef: 0".into());
    }
    Ok(())
}

/// Training and validation prompts, and what the user should know.
struct PromptData {
    train: Vec<PromptTokens>,
    valid: Vec<PromptTokens>,
    warnings: Vec<String>,
}

fn load_prompts(
    config: &TrainConfig,
    loaded: &crate::model::LoadedModel,
    rewards: &Rewards,
) -> Result<PromptData> {
    let template = templates::resolve(
        config.template.as_deref(),
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
    )?;
    let read = config.read_options();
    let limit = config.max_length - config.max_completion_length;
    let mut warnings = template.warnings.clone();
    let mut read_file = |path: &std::path::Path| -> Result<PromptSet> {
        let set = read_prompts(path, &read, &template.template, &loaded.tokenizer, limit)?;
        if let Some(first) = set.skipped.first() {
            warnings.push(format!(
                "skipped {} unreadable record(s) of {}; the first, at {}{}: {}",
                set.skipped.len(),
                set.source.display(),
                set.source.display(),
                first.location,
                first.reason
            ));
        }
        if set.too_long > 0 {
            warnings.push(format!(
                "left out {} prompt(s) of {} longer than {limit} tokens (max_length {} less max_completion_length {})",
                set.too_long,
                set.source.display(),
                config.max_length,
                config.max_completion_length
            ));
        }
        if rewards.needs_answer() {
            if let Some(p) = set.prompts.iter().find(|p| p.answer.is_none()) {
                return Err(Error::Invalid(format!(
                    "{}: the exact_match reward compares with the record's `answer`, and this record has none",
                    p.location
                )));
            }
        }
        Ok(set)
    };
    let train = read_file(&config.data)?;
    let valid_path = config.valid.clone().or_else(|| valid_file(&config.data));
    let (train, valid) = match valid_path {
        Some(path) => (train.prompts, read_file(&path)?.prompts),
        None if config.valid_fraction > 0.0 => {
            let mut all = train.prompts;
            let n = all.len();
            if n < 2 {
                return Err(Error::Invalid(format!(
                    "{}: one prompt cannot be split into training and validation",
                    config.data.display()
                )));
            }
            let held = ((n as f64 * config.valid_fraction).round() as usize).clamp(1, n - 1);
            all.shuffle(&mut StdRng::seed_from_u64(config.seed));
            let valid = all.split_off(n - held);
            warnings.push(format!(
                "no validation file: held out {held} of {n} prompts ({:.0} %, seed {})",
                config.valid_fraction * 100.0,
                config.seed
            ));
            (all, valid)
        }
        None => (train.prompts, Vec::new()),
    };
    Ok(PromptData {
        train,
        valid,
        warnings,
    })
}

/// Sampled completions of a batch of prompts, as training rows, and their
/// figures.
struct Rollout {
    examples: Vec<Example>,
    advantages: Vec<f32>,
    window: GrpoWindow,
}

/// Figures summed between two reports.
#[derive(Default)]
struct GrpoWindow {
    completions: usize,
    reward_sum: f64,
    reward_squares: f64,
    by_function: Vec<f64>,
    kl: Option<(f64, usize)>,
    lengths: usize,
    clipped: usize,
    generation: Duration,
}

impl GrpoWindow {
    fn merge(&mut self, other: GrpoWindow) {
        self.completions += other.completions;
        self.reward_sum += other.reward_sum;
        self.reward_squares += other.reward_squares;
        if self.by_function.len() < other.by_function.len() {
            self.by_function.resize(other.by_function.len(), 0.0);
        }
        for (a, b) in self.by_function.iter_mut().zip(other.by_function) {
            *a += b;
        }
        if let Some((sum, n)) = other.kl {
            let (s, m) = self.kl.get_or_insert((0.0, 0));
            *s += sum;
            *m += n;
        }
        self.lengths += other.lengths;
        self.clipped += other.clipped;
        self.generation += other.generation;
    }

    /// Every rank's completions summed (the KL, measured over the global
    /// batch, and the sampling time, a wall time, stay this rank's).
    fn merge_over(&mut self, group: &crate::distributed::Group) -> Result<()> {
        let mut mine = vec![
            self.completions as f64,
            self.reward_sum,
            self.reward_squares,
            self.lengths as f64,
            self.clipped as f64,
        ];
        mine.extend(&self.by_function);
        let all = group.sum_scalars(&mine)?;
        self.completions = all[0].round() as usize;
        self.reward_sum = all[1];
        self.reward_squares = all[2];
        self.lengths = all[3].round() as usize;
        self.clipped = all[4].round() as usize;
        self.by_function = all[5..].to_vec();
        Ok(())
    }

    fn take(&mut self, names: &[&str]) -> Option<GrpoMetrics> {
        let w = std::mem::take(self);
        let n = w.completions;
        if n == 0 {
            return None;
        }
        let mean = w.reward_sum / n as f64;
        let var = (w.reward_squares / n as f64 - mean * mean).max(0.0);
        Some(GrpoMetrics {
            reward_mean: mean as f32,
            reward_std: var.sqrt() as f32,
            rewards: names
                .iter()
                .zip(&w.by_function)
                .map(|(name, s)| (name.to_string(), (s / n as f64) as f32))
                .collect(),
            kl: w.kl.map(|(s, m)| (s / m.max(1) as f64) as f32),
            completion_length: w.lengths as f32 / n as f32,
            clipped_fraction: w.clipped as f32 / n as f32,
            completions: n,
            generation_seconds: w.generation.as_secs_f64(),
        })
    }
}

/// Samples `count` completions of each prompt and scores them; a prompt's
/// samples come from its place in the global batch (the same on any number
/// of ranks).
fn roll_out(
    model: &mut Model,
    tokenizer: &crate::tokenizer::Tokenizer,
    prompts: &[(usize, &PromptTokens)],
    rewards: &Rewards,
    options: &GenerateOptions,
    count: usize,
) -> Result<Rollout> {
    let since = Instant::now();
    model.set_training(false);
    let mut window = GrpoWindow {
        by_function: vec![0.0; rewards.names().len()],
        ..GrpoWindow::default()
    };
    let mut examples = Vec::new();
    let mut totals = Vec::new();
    for &(k, prompt) in prompts {
        let options = GenerateOptions {
            seed: options.seed.wrapping_add((k * count) as u64),
            ..options.clone()
        };
        let group = sample_group(model, &tokenizer.stop_ids, &prompt.tokens, count, &options)?;
        for (completion, stopped) in group {
            let text_tokens = match completion.last() {
                Some(last) if stopped && tokenizer.stop_ids.contains(last) => {
                    &completion[..completion.len() - 1]
                }
                _ => &completion[..],
            };
            let text = tokenizer.decode(text_tokens)?;
            let scores = rewards.scores(&text, text_tokens.len(), prompt.answer.as_deref());
            for (sum, s) in window.by_function.iter_mut().zip(&scores) {
                *sum += *s as f64;
            }
            let total = rewards.total(&scores);
            window.completions += 1;
            window.reward_sum += total as f64;
            window.reward_squares += (total as f64).powi(2);
            totals.push(total);
            window.lengths += completion.len();
            window.clipped += usize::from(!stopped);
            let mut tokens = prompt.tokens.clone();
            tokens.extend(&completion);
            let mut trained = vec![false; prompt.tokens.len()];
            trained.resize(tokens.len(), true);
            examples.push(Example {
                tokens,
                trained,
                truncated: !stopped,
            });
        }
    }
    window.generation = since.elapsed();
    Ok(Rollout {
        advantages: advantages(&totals, count),
        examples,
        window,
    })
}

/// Mean reward of greedy completions of held-out prompts, and its figures.
fn evaluate(
    model: &mut Model,
    tokenizer: &crate::tokenizer::Tokenizer,
    prompts: &[PromptTokens],
    rewards: &Rewards,
    config: &TrainConfig,
    batch_size: usize,
    group: Option<&crate::distributed::Group>,
) -> Result<(f32, GrpoMetrics)> {
    let take = if config.val_batches == 0 {
        prompts.len()
    } else {
        (config.val_batches * batch_size).min(prompts.len())
    };
    let options = GenerateOptions {
        max_tokens: config.max_completion_length,
        temperature: 0.0,
        top_p: 1.0,
        seed: config.seed,
    };
    // Data parallel: each rank completes every Nth prompt; the figures are
    // summed.
    let (rank, size) = group.map_or((0, 1), |g| (g.rank, g.size));
    let chosen: Vec<(usize, &PromptTokens)> = prompts
        .iter()
        .take(take)
        .enumerate()
        .skip(rank)
        .step_by(size)
        .collect();
    let mut rollout = roll_out(model, tokenizer, &chosen, rewards, &options, 1)?;
    if let Some(g) = group {
        rollout.window.merge_over(g)?;
    }
    let metrics = rollout
        .window
        .take(rewards.names())
        .ok_or_else(|| Error::Invalid("the validation set has no prompt to evaluate".into()))?;
    Ok((-metrics.reward_mean, metrics))
}

/// A GRPO run, loaded and sized (what `plan` reports and `run` trains).
struct Prepared {
    rewards: Rewards,
    loaded: crate::model::LoadedModel,
    train_set: Vec<PromptTokens>,
    valid_set: Vec<PromptTokens>,
    warnings: Vec<String>,
    trainable: usize,
    total_parameters: usize,
    available_memory: u64,
    /// Prompts per batch (each `group_size` rows).
    batch_size: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    memory_estimate: MemoryEstimate,
    checkpointed_estimate: MemoryEstimate,
}

fn prepare(config: &TrainConfig) -> Result<Prepared> {
    check_config(config)?;
    let rewards = Rewards::new(&config.rewards)?;
    let (mut loaded, qlora_dense) = load_for_training(config)?;
    let data = load_prompts(config, &loaded, &rewards)?;
    let (train_set, valid_set, mut warnings) = (data.train, data.valid, data.warnings);
    if qlora_dense > 0 {
        warnings.push(format!(
            "QLoRA: {qlora_dense} projections kept dense (their input width is not a multiple of 32)"
        ));
    }
    let trainable = lora::apply(&mut loaded.model, &config.lora)?;
    let total_parameters = loaded.model.parameter_count();
    let on_cpu = cast_for_training(&mut loaded.model, config)?;
    let available_memory = crate::device::memory_available_for_training();
    // A batch is `batch_size` prompts, `group_size` rows each.
    let batch_size = match config.batch_size {
        0 if on_cpu => 1,
        0 => 4,
        b => b,
    };
    if config.batch_size == 0 {
        warnings.push(format!(
            "batch size auto: {batch_size} prompt(s) of {} completions per batch",
            config.group_size
        ));
    }
    let per_step = batch_size * config.grad_accumulation;
    if train_set.len() < per_step {
        return Err(Error::Invalid(format!(
            "{}: {} usable prompts make fewer than one step of {batch_size} × grad_accumulation {}",
            config.data.display(),
            train_set.len(),
            config.grad_accumulation
        )));
    }
    let steps_per_epoch = train_set.len() / per_step;
    let total_steps = config
        .iters
        .unwrap_or_else(|| ((config.epochs * steps_per_epoch as f64).ceil() as usize).max(1));
    let multiple = pad_multiple(compiles_step(config));
    let estimate_with = |recompute| {
        let width = config.max_length.div_ceil(multiple) * multiple;
        let shape = StepShape {
            batch: batch_size * config.group_size,
            width,
            recompute,
        };
        MemoryEstimate::of(&loaded.model, trainable, shape)
    };
    let memory_estimate = estimate_with(config.grad_checkpoint);
    let checkpointed_estimate = estimate_with(true);
    Ok(Prepared {
        rewards,
        loaded,
        train_set,
        valid_set,
        warnings,
        trainable,
        total_parameters,
        available_memory,
        batch_size,
        steps_per_epoch,
        total_steps,
        memory_estimate,
        checkpointed_estimate,
    })
}

/// What a GRPO configuration amounts to, without training. The examples
/// are prompts; the trained tokens are unknown until completions are
/// sampled (0).
pub(super) fn plan(config: &TrainConfig) -> Result<super::trainer::Plan> {
    let p = prepare(config)?;
    Ok(super::trainer::Plan {
        train_examples: p.train_set.len(),
        valid_examples: p.valid_set.len(),
        batch_size: p.batch_size,
        steps_per_epoch: p.steps_per_epoch,
        total_steps: p.total_steps,
        trained_tokens_per_epoch: 0,
        trainable_parameters: p.trainable,
        total_parameters: p.total_parameters,
        memory_estimate: p.memory_estimate,
        memory_estimate_checkpointed: p.checkpointed_estimate,
        available_memory: p.available_memory,
        warnings: p.warnings,
    })
}

pub(super) fn run(
    config: &TrainConfig,
    observer: &mut dyn Observer,
    control: &TrainControl,
    resume: bool,
) -> Result<TrainSummary> {
    mlx_rs::random::seed(config.seed)?;
    // Data parallel: each rank samples and trains every Nth prompt of each
    // batch (whole groups, so the advantages are its own), and the ranks sum
    // gradients; rank 0 alone reports and writes.
    let setup = RankSetup::join(config)?;
    let (group, ranks) = (&setup.group, setup.ranks());
    let mut quiet = |_: &TrainEvent| {};
    let (config, observer) = setup.route(config, observer, &mut quiet);
    let Prepared {
        rewards,
        mut loaded,
        train_set,
        valid_set,
        mut warnings,
        trainable,
        total_parameters,
        available_memory,
        batch_size,
        steps_per_epoch,
        total_steps,
        memory_estimate,
        checkpointed_estimate,
    } = prepare(config)?;
    check_memory(
        config,
        &memory_estimate,
        &checkpointed_estimate,
        available_memory,
        batch_size,
    )?;
    if batch_size < ranks {
        return Err(Error::Invalid(format!(
            "GRPO over {ranks} ranks gives each rank whole prompts: the batch needs at least {ranks} prompts, not {batch_size}"
        )));
    }
    if let Some(g) = &group {
        warnings.push(format!(
            "data parallel over {}: {} rank(s), each sampling and training one prompt in {} of every batch of {batch_size}",
            g.backend, g.size, g.size
        ));
    }
    let compiled_step = compiles_step(config);
    let multiple = pad_multiple(compiled_step);
    let tokenizer = &loaded.tokenizer;
    let model = &mut loaded.model;
    let mut optimizer = TrainOptimizer::new(config)?;
    let mut state = LoopState {
        step: 0,
        trained_tokens: 0,
        best_val_loss: None,
        evals_since_best: 0,
        ranks,
    };
    let mut resumed_from_step = None;
    if resume {
        let dir = setup.resume_dir()?;
        state = checkpoint::restore(&dir, model, &mut optimizer)?;
        resumed_from_step = Some(state.step);
        if state.ranks != ranks {
            warnings.push(format!(
                "resumed with {ranks} rank(s); the run's last session had {}: the global batch is the same, so are the steps (to float32 summation order)",
                state.ranks
            ));
            state.ranks = ranks;
        }
    }
    observer.on_event(&TrainEvent::Started {
        total_steps,
        steps_per_epoch,
        train_examples: train_set.len(),
        valid_examples: valid_set.len(),
        method: config.method,
        trainable_parameters: trainable,
        total_parameters,
        resumed_from_step,
        warnings,
        memory_estimate: Some(memory_estimate),
    });

    let schedule = Schedule {
        kind: config.schedule,
        peak: config.learning_rate,
        warmup_steps: config.warmup_steps,
        total_steps,
        final_fraction: 0.0,
    };
    let kl_coef = config.kl_coef;
    let mut step_fn = nn::value_and_grad(grpo_loss(kl_coef));
    let mut compiled = compiled_step.then(|| compiled_value_and_grad(model, 2, grpo_loss(kl_coef)));
    let pad = tokenizer
        .eos_token
        .as_deref()
        .and_then(|t| tokenizer.token_to_id(t))
        .unwrap_or(0);
    let sampling = GenerateOptions {
        max_tokens: config.max_completion_length,
        temperature: config.temperature,
        top_p: config.top_p,
        seed: 0,
    };

    mlx_rs::memory::reset_peak_memory()?;
    let mut clock = Clock::start();
    let mut session_tokens = 0usize;
    let mut window = (0.0f64, 0usize);
    let mut figures = GrpoWindow::default();
    let mut last_loss = None;
    let first_step = state.step;
    let mut order =
        super::batches::epoch_order(train_set.len(), config.seed, first_step / steps_per_epoch);
    // Ctrl-C on any rank stops every rank after the same step.
    let mut group_cancelled = false;

    for step in first_step..total_steps {
        if control.state() == PAUSED {
            let since = Instant::now();
            while control.state() == PAUSED {
                std::thread::sleep(Duration::from_millis(50));
            }
            clock.paused += since.elapsed();
        }
        if (group.is_none() && control.state() == CANCELLED) || group_cancelled {
            stop_early(
                config,
                model,
                &mut optimizer,
                &state,
                observer,
                "cancelled".into(),
            )?;
            return Ok(summary(
                &state,
                last_loss,
                session_tokens,
                &clock,
                &config.output,
            ));
        }
        let epoch = step / steps_per_epoch;
        if step % steps_per_epoch == 0 && step > first_step {
            order = super::batches::epoch_order(train_set.len(), config.seed, epoch);
        }
        let lr = schedule.at(step);
        optimizer.set_learning_rate(lr);

        let mut accumulated: Option<Gradients> = None;
        let mut loss_sum = Array::from_f32(0.0);
        let mut kl_sum = Array::from_f32(0.0);
        let (mut step_tokens, mut step_rows) = (0usize, 0usize);
        for micro in 0..config.grad_accumulation {
            let start = ((step % steps_per_epoch) * config.grad_accumulation + micro) * batch_size;
            let (rank, size) = group.as_ref().map_or((0, 1), |g| (g.rank, g.size));
            let prompts: Vec<(usize, &PromptTokens)> = order[start..start + batch_size]
                .iter()
                .map(|&i| &train_set[i])
                .enumerate()
                .skip(rank)
                .step_by(size)
                .collect();
            // Each step's samples come from its own seed: a resumed run
            // draws the same completions.
            let options = GenerateOptions {
                seed: micro_seed(config, step, micro).wrapping_mul(1_000_033),
                ..sampling.clone()
            };
            let rollout = roll_out(
                model,
                tokenizer,
                &prompts,
                &rewards,
                &options,
                config.group_size,
            )?;
            let rows: Vec<Row> = (0..rollout.examples.len()).map(|i| vec![i]).collect();
            let batch = try_make_batch(&rollout.examples, &rows, pad, multiple)?;
            let width = padded_width(&rollout.examples, &rows, multiple);
            let reference = if kl_coef > 0.0 {
                model.set_adapters_enabled(false);
                let nll = token_nll(model, &batch.inputs, &batch.targets, &batch.mask, false);
                model.set_adapters_enabled(true);
                let nll = mlx_rs::stop_gradient(nll?)?;
                nll.eval()?;
                nll
            } else {
                Array::zeros::<f32>(&[rows.len() as i32, width as i32])?
            };
            let n = rows.len();
            let advantages = Array::from_slice(&rollout.advantages, &[n as i32]);
            let args = vec![
                batch.inputs.clone(),
                batch.targets.clone(),
                batch.mask.clone(),
                advantages,
                reference,
            ];
            mlx_rs::random::seed(setup.dropout_seed(config, step))?;
            model.set_training(true);
            let (mut values, grads) = if config.grad_checkpoint {
                let seed = setup.micro_dropout_seed(config, step, micro);
                let head = |model: &mut Model, h: &Array| {
                    let normed = model.final_norm(h)?;
                    loss_from_hidden(model, &normed, &args, kl_coef, true)
                };
                recompute::checkpointed(model, &batch.inputs, None, seed, head)?
            } else if let Some(compiled) = compiled.as_mut() {
                compiled(model, args)?
            } else {
                step_fn(model, args)?
            };
            model.set_training(false);
            let kl = values.pop().expect("two outputs");
            let loss = values.pop().expect("two outputs");
            let weight = Array::from_f32(n as f32);
            loss_sum = loss_sum.add(loss.multiply(&weight)?)?;
            kl_sum = kl_sum.add(kl.multiply(&weight)?)?;
            step_tokens += batch.trained_tokens;
            step_rows += n;
            accumulated = Some(match accumulated {
                None => grads
                    .into_iter()
                    .map(|(k, g)| Ok((k, g.multiply(&weight)?)))
                    .collect::<Result<_>>()?,
                Some(mut acc) => {
                    for (k, g) in grads {
                        let sum = acc[&k].add(g.multiply(&weight)?)?;
                        acc.insert(k, sum);
                    }
                    acc
                }
            });
            let pending: Vec<&Array> = accumulated
                .as_ref()
                .expect("set above")
                .values()
                .chain([&loss_sum, &kl_sum])
                .collect();
            mlx_rs::transforms::eval(pending)?;
            figures.merge(rollout.window);
        }
        let mut accumulated = accumulated.expect("at least one batch");
        let mut total = Array::from_f32(step_rows as f32);
        // Data parallel: the ranks' weighted sums, summed, over the global
        // batch's completions (one collective with the loss, the KL, the
        // counts and whether any rank was asked to stop).
        if let Some(g) = group {
            let stop = control.state() == CANCELLED;
            let (summed, counts) = sum_over_ranks(
                g,
                accumulated,
                &mut [&mut loss_sum, &mut kl_sum],
                step_rows,
                step_tokens,
                stop,
            )?;
            accumulated = summed;
            counts.eval()?;
            let counts = counts.as_slice::<f32>().to_vec();
            step_rows = counts[0] as usize;
            step_tokens = counts[1] as usize;
            group_cancelled = counts[2] > 0.0;
            total = Array::from_f32(step_rows.max(1) as f32);
        }
        let grads = accumulated
            .into_iter()
            .map(|(k, g)| Ok((k, g.divide(&total)?)))
            .collect::<Result<Gradients>>()?;
        let loss = loss_sum.divide(&total)?;
        let kl = kl_sum.divide(&total)?;
        let (grads, grad_norm) = clip_by_global_norm(grads, config.max_grad_norm)?;
        optimizer.update(model, &grads)?;
        let optimizer_state = optimizer.state_arrays()?;
        let mut to_eval: Vec<&Array> = vec![&loss, &grad_norm, &kl];
        let params = model.trainable_parameters().flatten();
        to_eval.extend(params.values().copied());
        to_eval.extend(optimizer_state.iter());
        mlx_rs::transforms::eval(to_eval)?;
        setup.check_params(model, step + 1)?;
        let loss_value: f32 = loss.item_exact();
        if !loss_value.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss became {loss_value} at step {}: lower the learning rate",
                step + 1
            )));
        }
        if kl_coef > 0.0 {
            let (s, m) = figures.kl.get_or_insert((0.0, 0));
            *s += kl.item_exact::<f32>() as f64 * step_rows as f64;
            *m += step_rows;
        }
        last_loss = Some(loss_value);
        state.step = step + 1;
        state.trained_tokens += step_tokens;
        session_tokens += step_tokens;
        window.0 += loss_value as f64 * step_rows as f64;
        window.1 += step_rows;

        let done = step + 1;
        if done % config.steps_per_report.max(1) == 0 || done == total_steps {
            if let Some(g) = &group {
                figures.merge_over(g)?;
            }
            let elapsed = clock.elapsed();
            let seconds_per_step = elapsed / (done - first_step) as f64;
            observer.on_event(&TrainEvent::Step {
                step: done,
                epoch: done as f64 / steps_per_epoch as f64,
                loss: (window.0 / window.1.max(1) as f64) as f32,
                learning_rate: lr,
                grad_norm: grad_norm.item_exact(),
                trained_tokens: state.trained_tokens,
                tokens_per_second: session_tokens as f64 / clock.training().max(1e-9),
                elapsed_seconds: elapsed,
                eta_seconds: seconds_per_step * (total_steps - done) as f64,
                mlx_active_bytes: mlx_rs::memory::active_memory()?,
                mlx_peak_bytes: mlx_rs::memory::peak_memory()?,
                system_available_bytes: crate::device::system_available_memory(),
                preference: None,
                grpo: figures.take(rewards.names()),
            });
            window = (0.0, 0);
        }
        let eval_now =
            (config.steps_per_eval > 0 && done % config.steps_per_eval == 0) || done == total_steps;
        if eval_now && !valid_set.is_empty() {
            let since = Instant::now();
            let (val_loss, metrics) = evaluate(
                model,
                tokenizer,
                &valid_set,
                &rewards,
                config,
                batch_size,
                group.as_ref(),
            )?;
            clock.evaluating += since.elapsed();
            let best = state.best_val_loss.is_none_or(|b| val_loss < b);
            if best {
                state.best_val_loss = Some(val_loss);
                state.evals_since_best = 0;
                lora::save_mlx_adapters(model, &config.lora, &config.output.join("best"))?;
            } else {
                state.evals_since_best += 1;
            }
            observer.on_event(&TrainEvent::Eval {
                step: done,
                val_loss,
                best,
                preference: None,
                grpo: Some(metrics),
            });
            if let Some(patience) = config.early_stopping_patience {
                if !best && state.evals_since_best >= patience && done < total_steps {
                    let reason = format!(
                        "early stopping: the validation reward has not improved for {patience} evaluations; the best adapters are in {}",
                        config.output.join("best").display()
                    );
                    stop_early(config, model, &mut optimizer, &state, observer, reason)?;
                    return Ok(summary(
                        &state,
                        last_loss,
                        session_tokens,
                        &clock,
                        &config.output,
                    ));
                }
            }
        }
        if config.steps_per_checkpoint > 0
            && done % config.steps_per_checkpoint == 0
            && done < total_steps
        {
            write_checkpoint(config, model, &mut optimizer, &state, observer)?;
        }
    }

    lora::save_mlx_adapters(model, &config.lora, &config.output)?;
    write_checkpoint(config, model, &mut optimizer, &state, observer)?;
    observer.on_event(&TrainEvent::Checkpoint {
        step: total_steps,
        path: config.output.display().to_string(),
    });
    let summary = summary(&state, last_loss, session_tokens, &clock, &config.output);
    observer.on_event(&TrainEvent::Finished {
        summary: summary.clone(),
    });
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_normalised_within_each_group() {
        let a = advantages(&[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4);
        // Group 1: mean 0.5, unbiased std 0.57735.
        let s = 0.5f32 / (0.577_350_3 + 1e-4);
        for (got, want) in a.iter().zip([s, -s, -s, s, 0.0, 0.0, 0.0, 0.0]) {
            assert!((got - want).abs() < 1e-5, "{a:?}");
        }
    }
}
