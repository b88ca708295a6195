//! Preference training: DPO (sigmoid, with label smoothing), IPO and ORPO
//! over batches of pairs, computed as TRL computes them (the parity test
//! compares against `tests/fixtures/preference`, made by TRL).
//!
//! A preference dataset is tokenized into two examples per record, the
//! chosen answer then the rejected one (`data::tokenize`); a batch of B
//! pairs is 2B rows, the chosen ones first. Each side's loss mask covers its
//! completion only. DPO and IPO compare the policy with the reference: the
//! same base with the adapters left out, so one copy of the weights serves
//! both; its log-probabilities are computed without gradients and kept per
//! pair (the base is frozen, so they never change).

use std::collections::HashMap;

use mlx_rs::{error::Exception, ops, Array};
use serde::{Deserialize, Serialize};

use super::batches::{length_sorted_groups, Row};
use crate::data::{Example, ExampleSource};
use crate::error::Result;
use crate::eval::nll_from_hidden;
use crate::kernels::CrossEntropyRows;
use crate::model::Model;

/// What a run learns from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Supervised fine-tuning: the answers themselves.
    #[default]
    Sft,
    /// Direct preference optimisation (sigmoid loss over the reward margin).
    Dpo,
    /// Identity preference optimisation: the squared distance of the
    /// length-averaged margin from 1/(2β).
    Ipo,
    /// Odds-ratio preference optimisation: SFT on the chosen answer plus
    /// λ times the log-odds-ratio term; no reference model.
    Orpo,
    /// Group-relative policy optimisation: several completions sampled per
    /// prompt, scored by reward functions, each pushed up or down by how it
    /// compares with its group; a KL penalty keeps it near the reference.
    Grpo,
}

impl Method {
    /// Whether it trains on chosen / rejected pairs.
    pub fn is_preference(self) -> bool {
        matches!(self, Method::Dpo | Method::Ipo | Method::Orpo)
    }

    /// Whether the loss compares with a reference model.
    pub fn needs_reference(self) -> bool {
        matches!(self, Method::Dpo | Method::Ipo)
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Sft => "sft",
            Method::Dpo => "dpo",
            Method::Ipo => "ipo",
            Method::Orpo => "orpo",
            Method::Grpo => "grpo",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sft" => Ok(Method::Sft),
            "dpo" => Ok(Method::Dpo),
            "ipo" => Ok(Method::Ipo),
            "orpo" => Ok(Method::Orpo),
            "grpo" => Ok(Method::Grpo),
            _ => Err(format!("`{s}`: expected sft, dpo, ipo, orpo or grpo")),
        }
    }
}

/// The loss of a preference run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreferenceLoss {
    pub method: Method,
    /// DPO's / IPO's β (the reward scale); ORPO's λ (the odds-ratio weight).
    pub beta: f32,
    /// DPO only: the probability that a pair's labels are flipped
    /// (conservative DPO).
    pub label_smoothing: f32,
}

/// A batch's preference figures, one entry per pair (rewards are β times
/// the policy-minus-reference log-probability; ORPO's have no reference).
#[derive(Debug, Clone)]
pub struct PairMetrics {
    pub loss: Array,
    pub chosen_rewards: Array,
    pub rejected_rewards: Array,
}

/// Each position's negative log-likelihood of its target (R, T), computed
/// where `scored` is 1 (0 elsewhere).
pub(super) fn token_nll(
    model: &mut Model,
    inputs: &Array,
    targets: &Array,
    scored: &Array,
    differentiated: bool,
) -> std::result::Result<Array, Exception> {
    let h = model.hidden_states(inputs, None)?;
    let rows = CrossEntropyRows {
        mask: Some(scored),
        differentiated,
    };
    nll_from_hidden(model, &h, targets, rows)
}

/// The sum over each row of `nll`'s positions where `mask` is 1, negated: a
/// row's log-probability (R).
fn row_sums(nll: &Array, mask: &Array) -> std::result::Result<Array, Exception> {
    nll.multiply(mask)?.sum_axis(-1, None)?.negative()
}

/// Summed log-probabilities of each row's trained tokens, and the number of
/// trained tokens in each row: (R), (R).
pub fn row_logps(
    model: &mut Model,
    inputs: &Array,
    targets: &Array,
    mask: &Array,
    differentiated: bool,
) -> std::result::Result<(Array, Array), Exception> {
    let nll = token_nll(model, inputs, targets, mask, differentiated)?;
    Ok((row_sums(&nll, mask)?, mask.sum_axis(-1, None)?))
}

/// The reference model's summed log-probabilities of each row: the same
/// forward pass with the adapters left out, without a gradient.
pub fn reference_logps(
    model: &mut Model,
    inputs: &Array,
    targets: &Array,
    mask: &Array,
) -> std::result::Result<Array, Exception> {
    model.set_adapters_enabled(false);
    let result = row_logps(model, inputs, targets, mask, false);
    model.set_adapters_enabled(true);
    let (sums, _) = result?;
    mlx_rs::stop_gradient(sums)
}

/// log(1 − eᵃ) for a < 0, precise at both ends (log1p near −∞, expm1
/// near 0); each branch sees only inputs it is finite on, so neither can
/// put a NaN into the gradient.
fn log1m_exp(a: &Array) -> std::result::Result<Array, Exception> {
    let cut = Array::from_f32(-std::f32::consts::LN_2);
    let low = ops::minimum(a, &cut)?;
    let high = ops::maximum(ops::minimum(a, Array::from_f32(-1e-7))?, &cut)?;
    let far = ops::log1p(ops::exp(&low)?.negative()?)?;
    let near = ops::log(ops::expm1(&high)?.negative()?)?;
    ops::select(&a.lt(&cut)?, &far, &near)
}

fn halves(a: &Array) -> std::result::Result<(Array, Array), Exception> {
    let parts = ops::split_equal(a, 2, 0)?;
    Ok((parts[0].clone(), parts[1].clone()))
}

fn log_sigmoid(x: &Array) -> std::result::Result<Array, Exception> {
    // log σ(x) = −softplus(−x), stable for large |x|.
    ops::logaddexp(Array::from_f32(0.0), &x.negative()?)?.negative()
}

impl PreferenceLoss {
    /// The batch's loss (the first element, to differentiate) and its
    /// per-pair figures: [loss, chosen rewards, rejected rewards]. `extra`
    /// is, for DPO and IPO, the reference's summed log-probabilities of the
    /// 2B rows ([`ReferenceCache`]); for ORPO, the mask of every real
    /// position ([`sequence_mask`]), over which its SFT term runs.
    pub fn compute(
        &self,
        model: &mut Model,
        inputs: &Array,
        targets: &Array,
        mask: &Array,
        extra: Option<&Array>,
        differentiated: bool,
    ) -> std::result::Result<Vec<Array>, Exception> {
        let hidden = model.hidden_states(inputs, None)?;
        self.from_hidden(model, &hidden, targets, mask, extra, differentiated)
    }

    /// [`compute`](Self::compute) from the model's final hidden states
    /// (after its last norm): what gradient checkpointing's head runs.
    pub fn from_hidden(
        &self,
        model: &mut Model,
        hidden: &Array,
        targets: &Array,
        mask: &Array,
        extra: Option<&Array>,
        differentiated: bool,
    ) -> std::result::Result<Vec<Array>, Exception> {
        let missing = || Exception::custom(format!("{} needs its extra batch input", self.method));
        let sequence = if self.method == Method::Orpo {
            Some(extra.ok_or_else(missing)?)
        } else {
            None
        };
        let rows = CrossEntropyRows {
            mask: Some(sequence.unwrap_or(mask)),
            differentiated,
        };
        let nll = nll_from_hidden(model, hidden, targets, rows)?;
        let sums = row_sums(&nll, mask)?;
        let counts = ops::maximum(mask.sum_axis(-1, None)?, Array::from_f32(1.0))?;
        let beta = Array::from_f32(self.beta);
        let (loss, chosen_rewards, rejected_rewards) = match self.method {
            Method::Dpo | Method::Ipo => {
                let reference = extra.ok_or_else(missing)?;
                let (pc, pr) = halves(&sums)?;
                let (rc, rr) = halves(reference)?;
                // Log-ratios of policy to reference, summed over each answer.
                let chosen = pc.subtract(&rc)?;
                let rejected = pr.subtract(&rr)?;
                let losses = if self.method == Method::Ipo {
                    // IPO compares them per token: each over its answer's length.
                    let (nc, nr) = halves(&counts)?;
                    let logits = chosen.divide(&nc)?.subtract(rejected.divide(&nr)?)?;
                    let target = Array::from_f32(1.0 / (2.0 * self.beta));
                    logits.subtract(&target)?.square()?
                } else {
                    let logits = chosen.subtract(&rejected)?;
                    let scaled = logits.multiply(&beta)?;
                    let eps = self.label_smoothing;
                    let kept = log_sigmoid(&scaled)?.multiply(Array::from_f32(1.0 - eps))?;
                    let flipped =
                        log_sigmoid(&scaled.negative()?)?.multiply(Array::from_f32(eps))?;
                    kept.add(flipped)?.negative()?
                };
                (
                    losses.mean(None)?,
                    mlx_rs::stop_gradient(chosen.multiply(&beta)?)?,
                    mlx_rs::stop_gradient(rejected.multiply(&beta)?)?,
                )
            }
            Method::Orpo => {
                let mean = sums.divide(&counts)?;
                let (ac, ar) = halves(&mean)?;
                // log odds(p) = log p − log(1 − p), from the average log p.
                let log_odds = |a: &Array| -> std::result::Result<Array, Exception> {
                    a.subtract(&log1m_exp(a)?)
                };
                let ratio = log_sigmoid(&log_odds(&ac)?.subtract(&log_odds(&ar)?)?)?;
                // The SFT term, as TRL computes it: the mean NLL over every
                // real position of the chosen rows, prompt included.
                let sequence = sequence.expect("set for ORPO");
                let (chosen_nll, _) = halves(&nll)?;
                let (chosen_positions, _) = halves(sequence)?;
                let sft = row_sums(&chosen_nll, &chosen_positions)?
                    .sum(None)?
                    .negative()?
                    .divide(ops::maximum(
                        chosen_positions.sum(None)?,
                        Array::from_f32(1.0),
                    )?)?;
                let loss = sft.subtract(&ratio.mean(None)?.multiply(&beta)?)?;
                (
                    loss,
                    mlx_rs::stop_gradient(ac.multiply(&beta)?)?,
                    mlx_rs::stop_gradient(ar.multiply(&beta)?)?,
                )
            }
            Method::Sft | Method::Grpo => {
                return Err(Exception::custom(format!(
                    "{} is not a preference method",
                    self.method
                )))
            }
        };
        Ok(vec![loss, chosen_rewards, rejected_rewards])
    }
}

/// 1 at every position of `rows` that predicts a real token (each row's
/// example, less its last token), 0 on padding: ORPO's SFT term runs over it.
pub fn sequence_mask<S: ExampleSource + ?Sized>(examples: &S, rows: &[Row], width: usize) -> Array {
    let mut mask = vec![0f32; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        let n = examples.example_len(row[0]).saturating_sub(1).min(width);
        mask[r * width..r * width + n].fill(1.0);
    }
    Array::from_slice(&mask, &[rows.len() as i32, width as i32])
}

/// A preference set seen pair by pair: pair `i` is examples 2i (chosen)
/// and 2i + 1 (rejected); its length is the longer side's.
pub struct Pairs<'a, S: ExampleSource + ?Sized>(pub &'a S);

impl<S: ExampleSource + ?Sized> ExampleSource for Pairs<'_, S> {
    fn example_count(&self) -> usize {
        self.0.example_count() / 2
    }
    fn example_len(&self, i: usize) -> usize {
        self.0.example_len(2 * i).max(self.0.example_len(2 * i + 1))
    }
    fn example_trained(&self, i: usize) -> usize {
        self.0.example_trained(2 * i) + self.0.example_trained(2 * i + 1)
    }
    fn example_truncated(&self, i: usize) -> bool {
        self.0.example_truncated(2 * i) || self.0.example_truncated(2 * i + 1)
    }
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, Example>> {
        // Batching reads the two sides through the examples themselves.
        self.0.example(2 * i)
    }
}

/// Batches of `pairs_per_batch` pairs by ascending length, each as its rows:
/// the chosen sides, then the rejected ones in the same order.
pub fn pair_groups<S: ExampleSource + ?Sized>(
    examples: &S,
    pairs_per_batch: usize,
) -> Vec<Vec<Row>> {
    length_sorted_groups(&Pairs(examples), pairs_per_batch)
        .into_iter()
        .map(|group| pair_rows(&group.iter().map(|row| row[0]).collect::<Vec<_>>()))
        .collect()
}

/// The rows of a batch of pairs (pair indices): chosen sides, then rejected.
pub fn pair_rows(pairs: &[usize]) -> Vec<Row> {
    let chosen = pairs.iter().map(|&p| vec![2 * p]);
    let rejected = pairs.iter().map(|&p| vec![2 * p + 1]);
    chosen.chain(rejected).collect()
}

/// The pair a batch of rows belongs to, by position (the chosen half).
pub fn pairs_of(rows: &[Row]) -> Vec<usize> {
    rows[..rows.len() / 2].iter().map(|r| r[0] / 2).collect()
}

/// The reference's log-probabilities of every pair seen so far (chosen,
/// rejected): the base is frozen, so a pair's never change.
#[derive(Default)]
pub struct ReferenceCache {
    logps: HashMap<usize, (f32, f32)>,
}

impl ReferenceCache {
    /// The reference log-probabilities of the batch's 2B rows, computed for
    /// the pairs not seen before.
    pub fn batch(
        &mut self,
        model: &mut Model,
        pairs: &[usize],
        inputs: &Array,
        targets: &Array,
        mask: &Array,
    ) -> Result<Array> {
        if pairs.iter().any(|p| !self.logps.contains_key(p)) {
            let logps = reference_logps(model, inputs, targets, mask)?;
            logps.eval()?;
            let values: Vec<f32> = logps.as_slice::<f32>().to_vec();
            let b = pairs.len();
            for (k, &p) in pairs.iter().enumerate() {
                self.logps.insert(p, (values[k], values[b + k]));
            }
        }
        let chosen = pairs.iter().map(|p| self.logps[p].0);
        let rejected = pairs.iter().map(|p| self.logps[p].1);
        let all: Vec<f32> = chosen.chain(rejected).collect();
        Ok(Array::from_slice(&all, &[all.len() as i32]))
    }

    pub fn len(&self) -> usize {
        self.logps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logps.is_empty()
    }
}

/// Means of a run's per-pair figures between two reports.
#[derive(Debug, Default, Clone)]
pub struct MetricsWindow {
    pairs: usize,
    chosen: f64,
    rejected: f64,
    correct: usize,
}

impl MetricsWindow {
    /// Adds a batch's rewards (evaluated arrays).
    pub fn add(&mut self, chosen: &Array, rejected: &Array) -> Result<()> {
        let c = chosen.as_slice::<f32>();
        let r = rejected.as_slice::<f32>();
        for (a, b) in c.iter().zip(r) {
            self.pairs += 1;
            self.chosen += *a as f64;
            self.rejected += *b as f64;
            self.correct += usize::from(a > b);
        }
        Ok(())
    }

    /// Data parallel: the window of every rank together (one collective;
    /// every rank must call it at the same point).
    pub fn merge_over(&mut self, group: &crate::distributed::Group) -> Result<()> {
        let all = group.sum_scalars(&[
            self.pairs as f64,
            self.chosen,
            self.rejected,
            self.correct as f64,
        ])?;
        *self = Self {
            pairs: all[0].round() as usize,
            chosen: all[1],
            rejected: all[2],
            correct: all[3].round() as usize,
        };
        Ok(())
    }

    /// The window's figures (None when it saw no pair), and a fresh window.
    pub fn take(&mut self) -> Option<super::events::PreferenceMetrics> {
        let w = std::mem::take(self);
        (w.pairs > 0).then(|| {
            let n = w.pairs as f64;
            super::events::PreferenceMetrics {
                chosen_reward: (w.chosen / n) as f32,
                rejected_reward: (w.rejected / n) as f32,
                margin: ((w.chosen - w.rejected) / n) as f32,
                accuracy: (w.correct as f64 / n) as f32,
                pairs: w.pairs,
            }
        })
    }
}

/// Refuses settings a preference run cannot honour, saying what to change.
pub fn check_config(config: &super::TrainConfig) -> Result<()> {
    use crate::error::Error;
    let method = config.method;
    if !method.is_preference() {
        return Ok(());
    }
    if !(config.beta.is_finite() && config.beta > 0.0) {
        return Err(Error::Invalid(format!(
            "beta must be a positive number, got {}",
            config.beta
        )));
    }
    if !(0.0..0.5).contains(&config.label_smoothing) {
        return Err(Error::Invalid(format!(
            "label_smoothing must be at least 0 and below 0.5, got {}",
            config.label_smoothing
        )));
    }
    if config.label_smoothing > 0.0 && method != Method::Dpo {
        return Err(Error::Invalid(format!(
            "label_smoothing applies to dpo, not {method}"
        )));
    }
    if config.packing {
        return Err(Error::Invalid(format!(
            "packing is not available with method {method}: each pair's two answers are rows of their own"
        )));
    }
    if method.needs_reference() && config.lora.full {
        return Err(Error::Invalid(format!(
            "method {method} compares with the base model, which full fine-tuning changes: train adapters (LoRA, DoRA, QLoRA), or use orpo, which needs no reference"
        )));
    }
    Ok(())
}
