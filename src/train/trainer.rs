//! The training loop: LoRA on a frozen base, masked cross-entropy
//! normalised by the number of trained tokens, an optimizer (AdamW by
//! default), a schedule, clipping,
//! periodic validation, events, and pause / cancel from another thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_rs::error::Exception;
use mlx_rs::module::ModuleParameters;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{nn, Array};
use serde::{Deserialize, Serialize};

use super::batches::{
    epoch_order, length_sorted_groups, packed_groups, pad_multiple, padded_width, try_make_batch,
    Batch, Row,
};
use super::checkpoint::{self, LoopState};
use super::config::TrainConfig;
use super::events::{Observer, TrainEvent};
use super::memory::{self, MemoryEstimate, StepShape};
use super::optimizer::TrainOptimizer;
use super::preference::{self, MetricsWindow, PreferenceLoss, ReferenceCache};
use super::recompute::{self, Gradients};
use super::schedule::Schedule;
use crate::data::{split_examples, split_pairs, templates, valid_file, Examples, Tokenization};
use crate::error::{Error, Result};
use crate::eval::nll_from_hidden;
use crate::kernels::CrossEntropyRows;
use crate::lora;
use crate::model::{self, LoadOptions, Model};

/// Run state shared with the thread that controls training.
#[derive(Debug, Clone, Default)]
pub struct TrainControl(Arc<AtomicU8>);

pub(super) const RUNNING: u8 = 0;
pub(super) const PAUSED: u8 = 1;
pub(super) const CANCELLED: u8 = 2;

impl TrainControl {
    pub fn pause(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, PAUSED, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn resume(&self) {
        let _ = self
            .0
            .compare_exchange(PAUSED, RUNNING, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn cancel(&self) {
        self.0.store(CANCELLED, Ordering::SeqCst);
    }
    pub fn is_paused(&self) -> bool {
        self.state() == PAUSED
    }
    pub fn is_cancelled(&self) -> bool {
        self.state() == CANCELLED
    }
    pub(super) fn state(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a run ended, with what it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub final_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub trained_tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub peak_memory_bytes: usize,
    pub adapter_dir: PathBuf,
}

/// Loads the model and data of `config`, trains, writes the adapters, and
/// reports through `observer`. Runs on the calling thread.
pub fn train(
    config: &TrainConfig,
    observer: &mut dyn Observer,
    control: &TrainControl,
) -> Result<TrainSummary> {
    report_failure(dispatch(config, observer, control, false), observer)
}

/// Continues a run from the newest checkpoint in `config.checkpoint_dir`,
/// exactly where it stopped (same weights, optimizer moments, data order).
pub fn resume(
    config: &TrainConfig,
    observer: &mut dyn Observer,
    control: &TrainControl,
) -> Result<TrainSummary> {
    report_failure(dispatch(config, observer, control, true), observer)
}

/// GRPO runs its own loop (it samples before each step); the others share
/// this one.
fn dispatch(
    config: &TrainConfig,
    observer: &mut dyn Observer,
    control: &TrainControl,
    resume: bool,
) -> Result<TrainSummary> {
    if config.method == super::preference::Method::Grpo {
        super::grpo::run(config, observer, control, resume)
    } else {
        run(config, observer, control, resume)
    }
}

pub(super) fn report_failure(
    result: Result<TrainSummary>,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    match result {
        Ok(summary) => Ok(summary),
        Err(e) => {
            observer.on_event(&TrainEvent::Failed {
                error: e.to_string(),
            });
            Err(e)
        }
    }
}

fn run(
    config: &TrainConfig,
    observer: &mut dyn Observer,
    control: &TrainControl,
    resume: bool,
) -> Result<TrainSummary> {
    mlx_rs::random::seed(config.seed)?;
    // A rank of a data-parallel group (started by `ft train start -n N`,
    // or by mlx.launch): every rank prepares the same data, trains its
    // share of each global batch, and sums gradients with the others; rank
    // 0 alone reports and writes.
    let setup = RankSetup::join(config)?;
    let (group, ranks) = (&setup.group, setup.ranks());
    let mut quiet = |_: &TrainEvent| {};
    let (config, observer) = setup.route(config, observer, &mut quiet);
    let Prepared {
        mut loaded,
        train_set,
        valid_set,
        mut warnings,
        groups,
        steps_per_epoch,
        total_steps,
        trainable,
        total_parameters,
        memory_estimate,
        checkpointed_estimate,
        batch_size,
        available_memory,
    } = prepare(config)?;
    if config.batch_size == 0 {
        warnings.push(format!(
            "batch size auto: {batch_size}, the largest whose estimate ({}) fits in {} of the {} available",
            memory::gib(memory_estimate.total),
            "60 %",
            memory::gib(available_memory)
        ));
    }
    check_memory(
        config,
        &memory_estimate,
        &checkpointed_estimate,
        available_memory,
        batch_size,
    )?;
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
    if let Some(g) = &group {
        warnings.push(format!(
            "data parallel over {}: {} rank(s), each training one {} in {} of every batch of {batch_size}",
            g.backend,
            g.size,
            if config.method.is_preference() {
                "pair"
            } else {
                "example"
            },
            g.size
        ));
    }
    let per = if config.method.is_preference() { 2 } else { 1 };
    observer.on_event(&TrainEvent::Started {
        total_steps,
        steps_per_epoch,
        train_examples: train_set.len() / per,
        valid_examples: valid_set.len() / per,
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
    let mut step_fn = nn::value_and_grad(loss_fn);
    // Preference runs: the pairs' loss; its figures ride along as outputs.
    let preference_loss = config.method.is_preference().then_some(PreferenceLoss {
        method: config.method,
        beta: config.beta,
        label_smoothing: config.label_smoothing,
    });
    let mut preference_step = preference_loss.map(|loss| {
        nn::value_and_grad(move |model: &mut Model, args: Vec<Array>| {
            loss.compute(model, &args[0], &args[1], &args[2], args.get(3), true)
        })
    });
    let mut reference = ReferenceCache::default();
    let mut valid_reference = ReferenceCache::default();
    let mut pair_window = MetricsWindow::default();
    // A compiled forward + backward: MLX fuses its element-wise work.
    let compiled_step = compiles_step(config);
    let mut compiled = (compiled_step && preference_loss.is_none())
        .then(|| compiled_value_and_grad(model, 1, sft_loss));
    let mut compiled_preference = preference_loss.filter(|_| compiled_step).map(|loss| {
        compiled_value_and_grad(model, 3, move |model: &mut Model, args: Vec<Array>| {
            loss.compute(model, &args[0], &args[1], &args[2], args.get(3), true)
        })
    });
    let multiple = pad_multiple(compiled_step);
    let pad = loaded
        .tokenizer
        .eos_token
        .as_deref()
        .and_then(|t| loaded.tokenizer.token_to_id(t))
        .unwrap_or(0);

    mlx_rs::memory::reset_peak_memory()?;
    let mut clock = Clock::start();
    let mut session_tokens = 0usize; // trained since this process started (for speed)
    let mut window = (0.0f64, 0usize); // Σ loss·tokens and tokens since the last report
    let mut last_loss = None;
    let first_step = state.step;
    let mut order = epoch_order(groups.len(), config.seed, first_step / steps_per_epoch);

    // Whether the group agreed to stop (a rank asked at its last step).
    let mut group_cancelled = false;
    for step in first_step..total_steps {
        // Pause / cancel between steps.
        // A paused rank holds the others at the step's collective.
        if control.state() == PAUSED {
            let since = Instant::now();
            while control.state() == PAUSED {
                std::thread::sleep(Duration::from_millis(50));
            }
            clock.paused += since.elapsed();
        }
        if (group.is_none() && control.state() == CANCELLED) || group_cancelled {
            let reason = "cancelled".to_string();
            stop_early(config, model, &mut optimizer, &state, observer, reason)?;
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
            order = epoch_order(groups.len(), config.seed, epoch);
        }
        let lr = schedule.at(step);
        optimizer.set_learning_rate(lr);
        // Dropout masks come from a seed per step, so a resumed run draws
        // the same ones; each rank its own (rank 0's are a lone process's).
        mlx_rs::random::seed(setup.dropout_seed(config, step))?;
        model.set_training(true);

        // Gradients of the accumulated batches, weighted by their trained
        // tokens: the same as one batch holding them all.
        let mut accumulated: Option<HashMap<Rc<str>, Array>> = None;
        let mut loss_sum = Array::from_f32(0.0);
        let mut step_tokens = 0usize;
        // What the batches are weighted by: trained tokens, or pairs.
        let mut step_units = 0usize;
        let mut rewards = Vec::new();
        for micro in 0..config.grad_accumulation {
            let position = (step % steps_per_epoch) * config.grad_accumulation + micro;
            let (rows, counts) = rank_rows(
                &groups[order[position]],
                group.as_ref().map(|g| (g.rank, g.size)),
                preference_loss.is_some(),
            );
            let rows = &rows[..];
            let batch = try_make_batch(&train_set, rows, pad, multiple)?;
            let units = match (counts, preference_loss) {
                (false, _) => 0,
                (true, Some(_)) => rows.len() / 2,
                (true, None) => batch.trained_tokens,
            };
            let weight = Array::from_f32(units as f32);
            let arrays = (
                &batch.inputs,
                &batch.targets,
                &batch.mask,
                batch.segments.as_ref(),
            );
            let (loss, grads) =
                if let (Some(step_fn), Some(kind)) = (preference_step.as_mut(), preference_loss) {
                    let mut args = vec![
                        batch.inputs.clone(),
                        batch.targets.clone(),
                        batch.mask.clone(),
                    ];
                    if kind.method.needs_reference() {
                        let pairs = preference::pairs_of(rows);
                        args.push(reference.batch(
                            model,
                            &pairs,
                            &batch.inputs,
                            &batch.targets,
                            &batch.mask,
                        )?);
                    } else {
                        let width = batch.inputs.shape()[1] as usize;
                        args.push(preference::sequence_mask(&train_set, rows, width));
                    }
                    let (mut values, grads) = if config.grad_checkpoint {
                        let seed = setup.micro_dropout_seed(config, step, micro);
                        let head = |model: &mut Model, h: &Array| {
                            let normed = model.final_norm(h)?;
                            kind.from_hidden(model, &normed, &args[1], &args[2], args.get(3), true)
                        };
                        recompute::checkpointed(model, &batch.inputs, None, seed, head)?
                    } else if let Some(compiled) = compiled_preference.as_mut() {
                        compiled(model, args)?
                    } else {
                        step_fn(model, args)?
                    };
                    let rejected = values.pop().expect("three outputs");
                    let chosen = values.pop().expect("three outputs");
                    // A rank's stand-in pair (weight 0) is not one of the batch's.
                    if counts {
                        rewards.push((chosen, rejected));
                    }
                    (values.pop().expect("the loss"), grads)
                } else if config.grad_checkpoint {
                    let seed = setup.micro_dropout_seed(config, step, micro);
                    recompute::checkpointed_value_and_grad(model, arrays, seed)?
                } else if let Some(compiled) = compiled.as_mut() {
                    let mut args = vec![
                        batch.inputs.clone(),
                        batch.targets.clone(),
                        batch.mask.clone(),
                    ];
                    args.extend(batch.segments.clone());
                    let (mut values, grads) = compiled(model, args)?;
                    (values.swap_remove(0), grads)
                } else {
                    step_fn(model, arrays)?
                };
            loss_sum = loss_sum.add(loss.multiply(&weight)?)?;
            step_tokens += if counts { batch.trained_tokens } else { 0 };
            step_units += units;
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
            if config.grad_accumulation > 1 {
                // Keep the graph of one batch alive at a time.
                let pending: Vec<&Array> = accumulated
                    .as_ref()
                    .expect("set above")
                    .values()
                    .chain(std::iter::once(&loss_sum))
                    .chain(rewards.iter().flat_map(|(c, r)| [c, r]))
                    .collect();
                mlx_rs::transforms::eval(pending)?;
            }
        }
        model.set_training(false);
        let mut accumulated = accumulated.expect("at least one batch");
        let mut total = Array::from_f32(step_units.max(1) as f32);
        // Data parallel: the ranks' weighted sums, summed, over the global
        // batch's units (one collective for the gradients, the loss, the
        // counts and whether any rank was asked to stop).
        let mut global_counts = None;
        if let Some(g) = group {
            let stop = control.state() == CANCELLED;
            let (summed, counts) = sum_over_ranks(
                g,
                accumulated,
                &mut [&mut loss_sum],
                step_units,
                step_tokens,
                stop,
            )?;
            accumulated = summed;
            total = mlx_rs::ops::maximum(counts.index(0), Array::from_f32(1.0))?;
            global_counts = Some(counts);
        }
        let grads = accumulated
            .into_iter()
            .map(|(k, g)| Ok((k, g.divide(&total)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let loss = loss_sum.divide(&total)?;
        let (grads, grad_norm) = clip_by_global_norm(grads, config.max_grad_norm)?;
        optimizer.update(model, &grads)?;
        let optimizer_state = optimizer.state_arrays()?;
        let mut to_eval: Vec<&Array> = vec![&loss, &grad_norm];
        to_eval.extend(global_counts.as_ref());
        to_eval.extend(rewards.iter().flat_map(|(c, r)| [c, r]));
        let params = model.trainable_parameters().flatten();
        to_eval.extend(params.values().copied());
        to_eval.extend(optimizer_state.iter());
        mlx_rs::transforms::eval(to_eval)?;
        setup.check_params(model, step + 1)?;

        let loss_value: f32 = loss.item_exact();
        let grad_norm: f32 = grad_norm.item_exact();
        if let Some(counts) = &global_counts {
            let counts: Vec<f32> = counts.as_slice::<f32>().to_vec();
            step_units = counts[0] as usize;
            step_tokens = counts[1] as usize;
            group_cancelled = counts[2] > 0.0;
        }
        if !loss_value.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss became {loss_value} at step {}: lower the learning rate",
                step + 1
            )));
        }
        last_loss = Some(loss_value);
        for (chosen, rejected) in &rewards {
            pair_window.add(chosen, rejected)?;
        }
        state.step = step + 1;
        state.trained_tokens += step_tokens;
        session_tokens += step_tokens;
        window.0 += loss_value as f64 * step_units as f64;
        window.1 += step_units;

        let done = step + 1;
        if done % config.steps_per_report.max(1) == 0 || done == total_steps {
            let elapsed = clock.elapsed();
            let tokens_per_second = session_tokens as f64 / clock.training().max(1e-9);
            let seconds_per_step = elapsed / (done - first_step) as f64;
            observer.on_event(&TrainEvent::Step {
                step: done,
                epoch: done as f64 / steps_per_epoch as f64,
                loss: (window.0 / window.1.max(1) as f64) as f32,
                learning_rate: lr,
                grad_norm,
                trained_tokens: state.trained_tokens,
                tokens_per_second,
                elapsed_seconds: elapsed,
                eta_seconds: seconds_per_step * (total_steps - done) as f64,
                mlx_active_bytes: mlx_rs::memory::active_memory()?,
                mlx_peak_bytes: mlx_rs::memory::peak_memory()?,
                system_available_bytes: crate::device::system_available_memory(),
                preference: {
                    // Every rank's pairs, not rank 0's share alone.
                    if let (Some(g), Some(_)) = (&group, preference_loss) {
                        pair_window.merge_over(g)?;
                    }
                    pair_window.take()
                },
                grpo: None,
            });
            window = (0.0, 0);
        }
        let eval_now =
            (config.steps_per_eval > 0 && done % config.steps_per_eval == 0) || done == total_steps;
        if eval_now && !valid_set.is_empty() {
            let since = Instant::now();
            let setup = EvalSetup {
                config,
                batch_size,
                pad,
                group: group.as_ref(),
            };
            let (val_loss, val_preference) = match preference_loss {
                Some(kind) => {
                    let (loss, metrics) =
                        evaluate_pairs(model, &valid_set, &setup, kind, &mut valid_reference)?;
                    (loss, Some(metrics))
                }
                None => (evaluate(model, &valid_set, &setup)?, None),
            };
            clock.evaluating += since.elapsed();
            let best = state.best_val_loss.is_none_or(|b| val_loss < b);
            if best {
                state.best_val_loss = Some(val_loss);
                state.evals_since_best = 0;
                // Keep the best adapters apart from the latest ones.
                lora::save_mlx_adapters(model, &config.lora, &config.output.join("best"))?;
            } else {
                state.evals_since_best += 1;
            }
            observer.on_event(&TrainEvent::Eval {
                step: done,
                val_loss,
                best,
                preference: val_preference,
                grpo: None,
            });
            if let Some(patience) = config.early_stopping_patience {
                if !best && state.evals_since_best >= patience && done < total_steps {
                    let reason = format!(
                        "early stopping: validation loss has not improved for {patience} evaluations; the best adapters are in {}",
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

/// Refuses a run whose estimate exceeds the memory available (unless the
/// guard is off), saying what to change.
pub(super) fn check_memory(
    config: &TrainConfig,
    memory_estimate: &MemoryEstimate,
    checkpointed_estimate: &MemoryEstimate,
    available_memory: u64,
    batch_size: usize,
) -> Result<()> {
    if !config.memory_guard {
        return Ok(());
    }
    // The weights are already loaded; the rest must fit in what is free.
    let needed = memory_estimate.total - memory_estimate.weights;
    if available_memory > 0 && needed > available_memory {
        let checkpointing = if config.grad_checkpoint {
            String::new()
        } else {
            format!(
                ", turn on gradient checkpointing (grad_checkpoint: about {} in all)",
                memory::gib(checkpointed_estimate.total)
            )
        };
        return Err(Error::Invalid(format!(
            "this run needs about {} more memory at its peak ({} in all: {} activations, {} logits), \
             and {} is available; lower batch_size ({batch_size}) or max_length ({}), use grad_accumulation{checkpointing}, \
             or set memory_guard: false to try anyway",
            memory::gib(needed),
            memory::gib(memory_estimate.total),
            memory::gib(memory_estimate.activations),
            memory::gib(memory_estimate.logits),
            memory::gib(available_memory),
            config.max_length
        )));
    }
    Ok(())
}

/// Everything a run needs before its first step.
struct Prepared {
    loaded: model::LoadedModel,
    train_set: Examples,
    valid_set: Examples,
    warnings: Vec<String>,
    groups: Vec<Vec<Row>>,
    steps_per_epoch: usize,
    total_steps: usize,
    trainable: usize,
    total_parameters: usize,
    memory_estimate: MemoryEstimate,
    /// The same run with gradient checkpointing.
    checkpointed_estimate: MemoryEstimate,
    /// `config.batch_size`, or the one picked for `0` (auto).
    batch_size: usize,
    available_memory: u64,
}

/// What a configuration amounts to, without training (`ft train validate`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub train_examples: usize,
    pub valid_examples: usize,
    pub batch_size: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
    /// Trained tokens in one pass over the training examples (0 for GRPO:
    /// its completions are not sampled yet).
    pub trained_tokens_per_epoch: usize,
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub memory_estimate: MemoryEstimate,
    /// The same run with gradient checkpointing (as `memory_estimate` when
    /// it is on).
    pub memory_estimate_checkpointed: MemoryEstimate,
    pub available_memory: u64,
    pub warnings: Vec<String>,
}

/// Loads, tokenizes and sizes a run without training it.
pub fn plan(config: &TrainConfig) -> Result<Plan> {
    if config.method == super::preference::Method::Grpo {
        return super::grpo::plan(config);
    }
    let p = prepare(config)?;
    Ok(Plan {
        train_examples: p.train_set.len(),
        valid_examples: p.valid_set.len(),
        batch_size: p.batch_size,
        steps_per_epoch: p.steps_per_epoch,
        total_steps: p.total_steps,
        trained_tokens_per_epoch: p.train_set.total_trained_tokens(),
        trainable_parameters: p.trainable,
        total_parameters: p.total_parameters,
        memory_estimate: p.memory_estimate,
        memory_estimate_checkpointed: p.checkpointed_estimate,
        available_memory: p.available_memory,
        warnings: p.warnings,
    })
}

/// Batch sizes tried for `batch_size: 0` (auto), largest first. On the CPU
/// a larger batch trains no more tokens per second, it only makes each step
/// (and the wait for the first loss) longer, so the choice stops at 4 there.
const AUTO_BATCH_SIZES: [usize; 6] = [32, 16, 8, 4, 2, 1];
const AUTO_BATCH_SIZES_CPU: [usize; 3] = [4, 2, 1];

/// Quantizes every projection of a QLoRA base to `bits`, in groups of 64
/// where the input width allows, else 32; a projection whose width is a
/// multiple of neither stays dense. Returns how many stayed dense.
pub fn quantize_for_qlora(model: &mut crate::model::Model, bits: i32) -> Result<usize> {
    let mut dense = 0;
    for p in model.projections_mut() {
        p.dequantize()?;
        let width = p.input_dims();
        let group_size = match width {
            w if w % 64 == 0 => 64,
            w if w % 32 == 0 => 32,
            _ => {
                dense += 1;
                continue;
            }
        };
        p.quantize(crate::model::projection::Quantization { group_size, bits })?;
    }
    Ok(dense)
}

/// The model of a run, loaded (and quantized for QLoRA); the number of
/// projections QLoRA kept dense.
pub(super) fn load_for_training(config: &TrainConfig) -> Result<(model::LoadedModel, usize)> {
    let load_options = LoadOptions {
        dequantize: !config.quantized_base && config.qlora_bits.is_none(),
        ..LoadOptions::default()
    };
    let mut loaded = model::load(&config.model, &load_options)?;
    let mut qlora_dense = 0;
    if let Some(bits) = config.qlora_bits {
        if bits != 4 && bits != 8 {
            return Err(Error::Invalid(format!(
                "qlora_bits must be 4 or 8, got {bits}"
            )));
        }
        qlora_dense = quantize_for_qlora(&mut loaded.model, bits)?;
        loaded.model.eval_parameters()?;
    }
    if config.grad_accumulation == 0 {
        return Err(Error::Invalid(
            "grad_accumulation must be at least 1".into(),
        ));
    }
    Ok((loaded, qlora_dense))
}

/// Casts the frozen weights to the run's precision; whether it runs on the
/// CPU.
pub(super) fn cast_for_training(model: &mut Model, config: &TrainConfig) -> Result<bool> {
    let on_cpu = matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Cpu)
    );
    model.cast_frozen_floats(config.precision.dtype(on_cpu))?;
    model.eval_parameters()?;
    Ok(on_cpu)
}

fn prepare(config: &TrainConfig) -> Result<Prepared> {
    let (mut loaded, qlora_dense) = load_for_training(config)?;
    preference::check_config(config)?;
    let data = load_data(config, &loaded)?;
    let (train_set, valid_set, mut warnings) = (data.train, data.valid, data.warnings);
    if qlora_dense > 0 {
        warnings.push(format!(
            "QLoRA: {qlora_dense} projections kept dense (their input width is not a multiple of 32)"
        ));
    }
    let trainable = lora::apply(&mut loaded.model, &config.lora)?;
    let total_parameters = loaded.model.parameter_count();
    let available_memory = crate::device::memory_available_for_training();

    let on_cpu = cast_for_training(&mut loaded.model, config)?;
    let sizes: Vec<usize> = if config.batch_size == 0 && on_cpu {
        AUTO_BATCH_SIZES_CPU.to_vec()
    } else if config.batch_size == 0 {
        AUTO_BATCH_SIZES.to_vec()
    } else {
        vec![config.batch_size]
    };
    let mut chosen = None;
    let multiple = pad_multiple(compiles_step(config));
    for &batch_size in &sizes {
        // A preference batch is `batch_size` pairs: twice the rows.
        let groups = if config.method.is_preference() {
            preference::pair_groups(&train_set, batch_size)
        } else if config.packing {
            packed_groups(&train_set, batch_size, config.max_length)
        } else {
            length_sorted_groups(&train_set, batch_size)
        };
        let rows = groups.first().map_or(batch_size, Vec::len);
        if groups.len() < config.grad_accumulation {
            continue;
        }
        let width = groups
            .iter()
            .map(|g| padded_width(&train_set, g, multiple))
            .max()
            .unwrap_or(1);
        let n_groups = groups.len();
        let estimate_with = |recompute| {
            let shape = StepShape {
                batch: rows,
                width,
                recompute,
            };
            let data = train_set.resident_bytes()
                + valid_set.resident_bytes()
                + memory::plan_bytes(train_set.len(), n_groups, rows, width) as usize;
            MemoryEstimate::of(&loaded.model, trainable, shape).with_data(data as u64)
        };
        let estimate = estimate_with(config.grad_checkpoint);
        let fits = available_memory == 0
            || (estimate.total - estimate.weights) as f64 <= 0.6 * available_memory as f64;
        let last = batch_size == *sizes.last().expect("non-empty");
        if config.batch_size != 0 || fits || last {
            chosen = Some((batch_size, groups, estimate, estimate_with(true)));
            break;
        }
    }
    let Some((batch_size, groups, memory_estimate, checkpointed_estimate)) = chosen else {
        return Err(Error::Invalid(format!(
            "{}: {} usable {} make fewer batches of {} than grad_accumulation {} needs",
            config.data.display(),
            if config.method.is_preference() {
                train_set.len() / 2
            } else {
                train_set.len()
            },
            if config.method.is_preference() {
                "pairs"
            } else {
                "examples"
            },
            sizes.last().copied().unwrap_or(1),
            config.grad_accumulation
        )));
    };
    // An optimizer step takes `grad_accumulation` batches; an epoch's last
    // batches that do not fill a step are left for the next epoch's shuffle.
    let steps_per_epoch = groups.len() / config.grad_accumulation;
    let total_steps = config
        .iters
        .unwrap_or_else(|| ((config.epochs * steps_per_epoch as f64).ceil() as usize).max(1));
    Ok(Prepared {
        loaded,
        train_set,
        valid_set,
        warnings,
        groups,
        steps_per_epoch,
        total_steps,
        trainable,
        total_parameters,
        memory_estimate,
        checkpointed_estimate,
        batch_size,
        available_memory,
    })
}

/// The dropout seed of a checkpointed micro-batch: both of its passes draw
/// the same masks, and every micro-batch its own.
pub(super) fn micro_seed(config: &TrainConfig, step: usize, micro: usize) -> u64 {
    config
        .seed
        .wrapping_add(step as u64)
        .wrapping_mul(31)
        .wrapping_add(micro as u64)
}

/// Whether training runs the compiled step: asked for (by default on a
/// GPU), and neither dropout (a compiled graph would replay one mask) nor
/// checkpointing in the way.
pub(super) fn compiles_step(config: &TrainConfig) -> bool {
    let compile = config.compile.unwrap_or_else(crate::device::default_is_gpu);
    compile && config.lora.dropout == 0.0 && !config.grad_checkpoint
}

/// Mean cross-entropy over the masked (trained) tokens, to be
/// differentiated; packed rows attend within each example only.
fn loss_fn(model: &mut Model, batch: recompute::BatchArrays<'_>) -> Result<Array, Exception> {
    batch_loss(model, batch, true)
}

/// The same loss; `differentiated` says whether a gradient will be taken
/// (our cross-entropy kernel then makes it in the same pass).
fn batch_loss(
    model: &mut Model,
    (inputs, targets, mask, segments): recompute::BatchArrays<'_>,
    differentiated: bool,
) -> Result<Array, Exception> {
    let h = model.hidden_states(inputs, segments)?;
    let rows = CrossEntropyRows {
        mask: Some(mask),
        differentiated,
    };
    let nll = nll_from_hidden(model, &h, targets, rows)?;
    masked_mean(&nll, mask)
}

/// The mean of `nll` over the trained (mask 1) tokens.
pub(super) fn masked_mean(nll: &Array, mask: &Array) -> Result<Array, Exception> {
    let count = mlx_rs::ops::maximum(mask.sum(None)?, Array::from_f32(1.0))?;
    nll.multiply(mask)?.sum(None)?.divide(count)
}

/// `nn::value_and_grad(loss)` compiled: the same values and gradients,
/// traced once per batch shape and replayed with MLX's element-wise
/// fusion. `loss` returns `values` arrays, the first differentiated (the
/// others ride along: a preference batch's rewards). The model is the
/// compiled function's state (its parameters are inputs, the trained ones
/// change between calls).
pub(super) fn compiled_value_and_grad<L>(
    model: &mut Model,
    values: usize,
    loss: L,
) -> impl FnMut(&mut Model, Vec<Array>) -> Result<(Vec<Array>, Gradients)>
where
    L: FnMut(&mut Model, Vec<Array>) -> std::result::Result<Vec<Array>, Exception>
        + Clone
        + 'static,
{
    let mut keys: Vec<Rc<str>> = model.trainable_parameters().flatten().into_keys().collect();
    keys.sort();
    let output_keys = keys.clone();
    let step =
        move |model: &mut Model, args: &[Array]| -> std::result::Result<Vec<Array>, Exception> {
            let mut value_and_grad = nn::value_and_grad(loss.clone());
            let (mut out, mut grads) = value_and_grad(model, args.to_vec())?;
            for key in &keys {
                out.push(
                    grads
                        .remove(key)
                        .ok_or_else(|| Exception::custom(format!("no gradient for {key}")))?,
                );
            }
            Ok(out)
        };
    let mut compiled = mlx_rs::transforms::compile::compile_with_state(step, false);
    move |model, args| {
        let mut out = compiled(model, &args)?;
        let grads = out.split_off(values);
        Ok((out, output_keys.iter().cloned().zip(grads).collect()))
    }
}

/// The SFT loss over a batch's arrays (inputs, targets, mask, segments).
fn sft_loss(model: &mut Model, args: Vec<Array>) -> std::result::Result<Vec<Array>, Exception> {
    Ok(vec![loss_fn(
        model,
        (&args[0], &args[1], &args[2], args.get(3)),
    )?])
}

/// How a run evaluates: its settings, batch size, padding token, and the
/// group whose ranks share the work (data parallel).
struct EvalSetup<'a> {
    config: &'a TrainConfig,
    batch_size: usize,
    pad: u32,
    group: Option<&'a crate::distributed::Group>,
}

/// Token-weighted mean validation loss.
fn evaluate(model: &mut Model, examples: &Examples, setup: &EvalSetup) -> Result<f32> {
    let EvalSetup {
        config,
        batch_size,
        pad,
        group,
    } = *setup;
    let groups = length_sorted_groups(examples, batch_size.min(examples.len()).max(1));
    let take = if config.val_batches == 0 {
        groups.len()
    } else {
        config.val_batches.min(groups.len())
    };
    let (mut total, mut tokens) = (0.0f64, 0usize);
    for (i, rows) in groups.iter().take(take).enumerate() {
        // Data parallel: each rank evaluates every Nth batch.
        if group.is_some_and(|g| i % g.size != g.rank) {
            continue;
        }
        let Batch {
            inputs,
            targets,
            mask,
            trained_tokens,
            ..
        } = try_make_batch(examples, rows, pad, pad_multiple(false))?;
        let loss: f32 = batch_loss(model, (&inputs, &targets, &mask, None), false)?.item_exact();
        total += loss as f64 * trained_tokens as f64;
        tokens += trained_tokens;
    }
    if let Some(g) = group {
        let both = g.sum_scalars(&[total, tokens as f64])?;
        (total, tokens) = (both[0], both[1].round() as usize);
    }
    Ok((total / tokens.max(1) as f64) as f32)
}

/// The preference loss over held-out pairs (pair-weighted mean) and their
/// figures.
fn evaluate_pairs(
    model: &mut Model,
    examples: &Examples,
    setup: &EvalSetup,
    kind: PreferenceLoss,
    reference: &mut ReferenceCache,
) -> Result<(f32, super::events::PreferenceMetrics)> {
    let EvalSetup {
        config,
        batch_size,
        pad,
        group,
    } = *setup;
    let pairs = examples.len() / 2;
    let groups = preference::pair_groups(examples, batch_size.min(pairs).max(1));
    let take = if config.val_batches == 0 {
        groups.len()
    } else {
        config.val_batches.min(groups.len())
    };
    let (mut total, mut seen) = (0.0f64, 0usize);
    let mut window = MetricsWindow::default();
    for (i, rows) in groups.iter().take(take).enumerate() {
        // Data parallel: each rank evaluates every Nth batch.
        if group.is_some_and(|g| i % g.size != g.rank) {
            continue;
        }
        let batch = try_make_batch(examples, rows, pad, pad_multiple(false))?;
        let (inputs, targets, mask) = (&batch.inputs, &batch.targets, &batch.mask);
        let extra = if kind.method.needs_reference() {
            let ids = preference::pairs_of(rows);
            reference.batch(model, &ids, inputs, targets, mask)?
        } else {
            preference::sequence_mask(examples, rows, inputs.shape()[1] as usize)
        };
        let values = kind.compute(model, inputs, targets, mask, Some(&extra), false)?;
        mlx_rs::transforms::eval(values.iter().collect::<Vec<_>>())?;
        let n = rows.len() / 2;
        total += values[0].item_exact::<f32>() as f64 * n as f64;
        seen += n;
        window.add(&values[1], &values[2])?;
    }
    if let Some(g) = group {
        let both = g.sum_scalars(&[total, seen as f64])?;
        (total, seen) = (both[0], both[1].round() as usize);
        window.merge_over(g)?;
    }
    let metrics = window.take().ok_or_else(|| {
        Error::Invalid("the validation set has no complete pair to evaluate".into())
    })?;
    Ok(((total / seen.max(1) as f64) as f32, metrics))
}

/// The gradients' global L2 norm (left on the device: reading it here
/// would make the GPU wait between the backward pass and the update),
/// summed in a fixed (sorted) order so that runs are bit-for-bit
/// reproducible (hash-map order changes per process), and the gradients
/// scaled by `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`
/// (by exactly 1 otherwise).
pub(super) fn clip_by_global_norm(
    grads: HashMap<Rc<str>, Array>,
    max_norm: Option<f32>,
) -> Result<(HashMap<Rc<str>, Array>, Array)> {
    let mut keys: Vec<&Rc<str>> = grads.keys().collect();
    keys.sort();
    let mut sum = Array::from_f32(0.0);
    for key in keys {
        sum = sum.add(grads[key].square()?.sum(None)?)?;
    }
    let norm = sum.sqrt()?;
    let Some(max) = max_norm else {
        return Ok((grads, norm));
    };
    let max = Array::from_f32(max);
    let shrink = max.divide(norm.add(Array::from_f32(1e-6))?)?;
    let factor = mlx_rs::ops::select(&norm.gt(&max)?, &shrink, Array::from_f32(1.0))?;
    let clipped = grads
        .into_iter()
        .map(|(k, g)| Ok((k, g.multiply(&factor)?)))
        .collect::<Result<_>>()?;
    Ok((clipped, norm))
}

/// Training and validation examples, and what the user should know.
struct Data {
    train: Examples,
    valid: Examples,
    warnings: Vec<String>,
}

fn load_data(config: &TrainConfig, loaded: &model::LoadedModel) -> Result<Data> {
    let template = templates::resolve(
        config.template.as_deref(),
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
    )?;
    let tokenization = Tokenization {
        template: Some(&template.template),
        tokenizer: &loaded.tokenizer,
        policy: config.mask_policy(),
        max_length: config.max_length,
    };
    let read = config.read_options();
    let cache = crate::paths::cache_dir().join("tokenized");
    let train = tokenization.file(&config.data, &read, Some(&cache))?;
    let mut warnings = Vec::new();
    if train.chat_records > 0 {
        warnings.extend(template.warnings);
    }
    // mlx-lm's convention: a valid file in the folder, or beside a train file.
    let valid_path = config.valid.clone().or_else(|| valid_file(&config.data));
    let mut files = vec![train];
    if let Some(path) = &valid_path {
        files.push(tokenization.file(path, &read, Some(&cache))?);
    }
    for file in &files {
        if !file.skipped.is_empty() {
            let first = &file.skipped[0];
            warnings.push(format!(
                "skipped {} unreadable record(s) of {}; the first, at {}{}: {}",
                file.skipped.len(),
                file.source.display(),
                file.source.display(),
                first.location,
                first.reason
            ));
        }
    }
    for file in &files {
        check_method_fits_data(config, file)?;
    }
    let valid_file = (files.len() > 1).then(|| files.pop().expect("two files"));
    let train = files.pop().expect("the train file");
    let pairs = config.method.is_preference();
    let (train_examples, valid_examples) = match valid_file {
        Some(valid) => (train.examples, valid.examples),
        None if config.valid_fraction > 0.0 => {
            let split = if pairs { split_pairs } else { split_examples };
            let (t, v) = split(train.examples, config.valid_fraction, config.seed);
            let (unit, per) = if pairs { ("pairs", 2) } else { ("examples", 1) };
            warnings.push(format!(
                "no validation file: held out {} of {} {unit} ({:.0} %, seed {})",
                v.len() / per,
                (t.len() + v.len()) / per,
                config.valid_fraction * 100.0,
                config.seed
            ));
            (t, v)
        }
        None => {
            let none = train.examples.select(&[]);
            (train.examples, none)
        }
    };
    Ok(Data {
        train: train_examples,
        valid: valid_examples,
        warnings,
    })
}

/// A preference method needs pairs, and pairs need a preference method.
fn check_method_fits_data(config: &TrainConfig, file: &crate::data::TokenizedFile) -> Result<()> {
    let method = config.method;
    let path = file.source.display();
    if method.is_preference() && file.pairs == 0 {
        return Err(Error::Invalid(format!(
            "{path}: method {method} trains on preference pairs (records with `chosen` and `rejected`), and this file has none"
        )));
    }
    if !method.is_preference() && file.pairs > 0 {
        return Err(Error::Invalid(format!(
            "{path}: a preference dataset ({} chosen / rejected pairs): train it with method dpo, ipo or orpo (--method)",
            file.pairs
        )));
    }
    Ok(())
}

/// Ends a run before its last step: adapters and a checkpoint are saved
/// first, so nothing trained is lost and the run can be resumed.
pub(super) fn stop_early(
    config: &TrainConfig,
    model: &Model,
    optimizer: &mut TrainOptimizer,
    state: &LoopState,
    observer: &mut dyn Observer,
    reason: String,
) -> Result<()> {
    lora::save_mlx_adapters(model, &config.lora, &config.output)?;
    write_checkpoint(config, model, optimizer, state, observer)?;
    observer.on_event(&TrainEvent::Stopped {
        step: state.step,
        reason,
    });
    Ok(())
}

/// Rank `group.rank`'s rows of a global batch (pairs kept together for
/// preference data), and whether they count: a rank whose share is empty
/// (a batch smaller than the group) still runs the step on the batch's
/// first row or pair, weighted 0, to take part in the sums.
fn rank_rows(
    rows: &[Vec<usize>],
    rank_of: Option<(usize, usize)>,
    pairs: bool,
) -> (Vec<Vec<usize>>, bool) {
    let Some((rank, size)) = rank_of else {
        return (rows.to_vec(), true);
    };
    let unit = if pairs { 2 } else { 1 };
    let units: Vec<&[Vec<usize>]> = rows.chunks(unit).collect();
    let mine: Vec<Vec<usize>> = crate::distributed::shard(&units, rank, size).concat();
    if mine.is_empty() {
        (units[0].to_vec(), false)
    } else {
        (mine, true)
    }
}

/// Whether the ranks compare their parameters after `step`: every
/// $FINETUNE_CHECK_RANKS steps, by default every 10 in debug builds (tests)
/// and never in release builds.
fn check_ranks_now(step: usize) -> bool {
    static EVERY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let every = *EVERY.get_or_init(|| {
        std::env::var("FINETUNE_CHECK_RANKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 10 } else { 0 })
    });
    every > 0 && step % every == 0
}

/// A process's place in a data-parallel group (started by `ft train start
/// -n N` or `--hosts`, or by mlx.launch): every rank prepares the same
/// data, trains its share of each global batch, and sums gradients with the
/// others; rank 0 alone reports and writes.
pub(super) struct RankSetup {
    pub(super) group: Option<crate::distributed::Group>,
    /// A rank other than 0: what it writes to instead of the run.
    pub(super) scratch: Option<RankScratch>,
    /// The run's checkpoints (rank 0 resumes from them).
    pub(super) checkpoint_root: Option<PathBuf>,
}

impl RankSetup {
    /// Joins the group the environment names, if any.
    pub(super) fn join(config: &TrainConfig) -> Result<Self> {
        let group = crate::distributed::launched_as_rank()
            .then(crate::distributed::Group::join)
            .transpose()?;
        let scratch = match &group {
            Some(g) if g.rank > 0 => Some(RankScratch::new(config)?),
            _ => None,
        };
        Ok(Self {
            group,
            scratch,
            checkpoint_root: config.checkpoint_dir.clone(),
        })
    }
}

impl RankSetup {
    pub(super) fn ranks(&self) -> usize {
        self.group.as_ref().map_or(1, |g| g.size)
    }

    /// Added to dropout seeds: each rank draws its own masks (rank 0 a lone
    /// process's).
    fn salt(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| (g.rank as u64) << 32)
    }

    /// The dropout seed of `step`: one per step, so a resumed run draws the
    /// same masks; each rank its own.
    pub(super) fn dropout_seed(&self, config: &TrainConfig, step: usize) -> u64 {
        config
            .seed
            .wrapping_add(step as u64)
            .wrapping_add(self.salt())
    }

    /// [`micro_seed`] for this rank's dropout masks.
    pub(super) fn micro_dropout_seed(
        &self,
        config: &TrainConfig,
        step: usize,
        micro: usize,
    ) -> u64 {
        micro_seed(config, step, micro).wrapping_add(self.salt())
    }

    /// The settings and observer this rank trains with: a rank other than
    /// 0 writes to its scratch folder and reports to `quiet`.
    pub(super) fn route<'a>(
        &'a self,
        config: &'a TrainConfig,
        observer: &'a mut dyn Observer,
        quiet: &'a mut dyn Observer,
    ) -> (&'a TrainConfig, &'a mut dyn Observer) {
        match &self.scratch {
            Some(s) => (&s.config, quiet),
            None => (config, observer),
        }
    }

    /// The checkpoint to resume from (see [`resume_dir`]).
    pub(super) fn resume_dir(&self) -> Result<PathBuf> {
        resume_dir(&self.group, &self.scratch, &self.checkpoint_root)
    }

    /// After `step`, every so often ([`check_ranks_now`]): whether every
    /// rank holds the same trained parameters.
    pub(super) fn check_params(&self, model: &Model, step: usize) -> Result<()> {
        let Some(g) = self.group.as_ref().filter(|_| check_ranks_now(step)) else {
            return Ok(());
        };
        let params = model.trainable_parameters().flatten();
        // By name: every rank lists them in the same order.
        let mut named: Vec<_> = params.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        g.check_same(&named.iter().map(|(_, a)| **a).collect::<Vec<_>>(), step)
    }
}

/// Data parallel: every rank's weighted gradient sums and `sums` (the loss,
/// …), summed in one collective with the step's counts (`units`, trained
/// `tokens`) and whether any rank was asked to stop. Returns the summed
/// gradients and the global `[units, tokens, stop]` (lazy).
pub(super) fn sum_over_ranks(
    group: &crate::distributed::Group,
    grads: HashMap<Rc<str>, Array>,
    sums: &mut [&mut Array],
    units: usize,
    tokens: usize,
    stop: bool,
) -> Result<(HashMap<Rc<str>, Array>, Array)> {
    let counts = Array::from_slice(&[units as f32, tokens as f32, f32::from(stop)], &[3]);
    // By name: every rank sums the same arrays in the same order.
    let mut keys: Vec<Rc<str>> = grads.keys().cloned().collect();
    keys.sort();
    let mut parts: Vec<&Array> = keys.iter().map(|k| &grads[k]).collect();
    parts.extend(sums.iter().map(|a| &**a));
    parts.push(&counts);
    let mut summed = group.all_sum_many(&parts)?;
    let counts = summed.pop().expect("the counts");
    for slot in sums.iter_mut().rev() {
        **slot = summed.pop().expect("one per sum");
    }
    Ok((keys.into_iter().zip(summed).collect(), counts))
}

/// The checkpoint a run resumes from: the run's newest on rank 0; on the
/// others (maybe on other machines) a copy of it, sent through the group.
fn resume_dir(
    group: &Option<crate::distributed::Group>,
    scratch: &Option<RankScratch>,
    checkpoint_root: &Option<PathBuf>,
) -> Result<PathBuf> {
    let latest = || -> Result<PathBuf> {
        let root = checkpoint_root.as_ref().ok_or_else(|| {
            Error::Invalid(
                "this run was not configured to write checkpoints, so it cannot resume".into(),
            )
        })?;
        checkpoint::latest(root)?.ok_or_else(|| {
            Error::Invalid(format!("{}: no checkpoint to resume from", root.display()))
        })
    };
    match (group, scratch) {
        (Some(g), Some(s)) => g.share_files(None, &s.checkpoint_copy()),
        (Some(g), None) => g.share_files(Some(&latest()?), Path::new("")),
        _ => latest(),
    }
}

/// What a rank other than 0 writes to: a copy of the run's settings
/// without the checkpoint folder, and its output in a temporary folder.
pub(super) struct RankScratch {
    pub(super) config: TrainConfig,
    _dir: tempfile::TempDir,
}

impl RankScratch {
    fn new(config: &TrainConfig) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut config = config.clone();
        config.output = dir.path().join("adapters");
        config.checkpoint_dir = None;
        Ok(Self { config, _dir: dir })
    }

    /// Where this rank keeps its copy of rank 0's checkpoint when resuming.
    fn checkpoint_copy(&self) -> PathBuf {
        self._dir.path().join("checkpoint")
    }
}

/// Writes a resumable checkpoint when the run has a checkpoint folder.
pub(super) fn write_checkpoint(
    config: &TrainConfig,
    model: &Model,
    optimizer: &mut TrainOptimizer,
    state: &LoopState,
    observer: &mut dyn Observer,
) -> Result<()> {
    if let Some(root) = &config.checkpoint_dir {
        let dir = checkpoint::save(root, model, optimizer, state)?;
        observer.on_event(&TrainEvent::Checkpoint {
            step: state.step,
            path: dir.display().to_string(),
        });
    }
    Ok(())
}

/// Wall time of a session, less pauses; training speed also leaves out the
/// time spent validating.
pub(super) struct Clock {
    start: Instant,
    pub(super) paused: Duration,
    pub(super) evaluating: Duration,
}

impl Clock {
    pub(super) fn start() -> Self {
        Self {
            start: Instant::now(),
            paused: Duration::ZERO,
            evaluating: Duration::ZERO,
        }
    }

    pub(super) fn elapsed(&self) -> f64 {
        (self.start.elapsed().saturating_sub(self.paused)).as_secs_f64()
    }

    pub(super) fn training(&self) -> f64 {
        self.elapsed() - self.evaluating.as_secs_f64()
    }
}

pub(super) fn summary(
    state: &LoopState,
    final_loss: Option<f32>,
    session_tokens: usize,
    clock: &Clock,
    dir: &Path,
) -> TrainSummary {
    TrainSummary {
        steps: state.step,
        final_loss,
        best_val_loss: state.best_val_loss,
        trained_tokens: state.trained_tokens,
        seconds: clock.elapsed(),
        tokens_per_second: session_tokens as f64 / clock.training().max(1e-9),
        peak_memory_bytes: mlx_rs::memory::peak_memory().unwrap_or(0),
        adapter_dir: dir.into(),
    }
}

#[cfg(test)]
mod rank_rows_tests {
    use super::rank_rows;

    #[test]
    fn each_rank_gets_every_nth_row_or_pair_and_an_empty_share_counts_nothing() {
        let rows: Vec<Vec<usize>> = (0..5).map(|i| vec![i]).collect();
        assert_eq!(rank_rows(&rows, None, false), (rows.clone(), true));
        let (mine, counts) = rank_rows(&rows, Some((1, 2)), false);
        assert_eq!((mine, counts), (vec![vec![1], vec![3]], true));
        // Pairs stay together: rows 2i and 2i + 1 are one pair.
        let pairs: Vec<Vec<usize>> = (0..6).map(|i| vec![i]).collect();
        let (mine, _) = rank_rows(&pairs, Some((1, 2)), true);
        assert_eq!(mine, vec![vec![2], vec![3]]);
        let (mine, _) = rank_rows(&pairs, Some((0, 2)), true);
        assert_eq!(mine, vec![vec![0], vec![1], vec![4], vec![5]]);
        // A batch smaller than the group: the rank with nothing runs the
        // first row, weighted 0.
        let (mine, counts) = rank_rows(&rows[..1], Some((1, 2)), false);
        assert_eq!((mine, counts), (vec![vec![0]], false));
        let (mine, counts) = rank_rows(&pairs[..2], Some((1, 2)), true);
        assert_eq!((mine, counts), (vec![vec![0], vec![1]], false));
    }
}
