//! The optimizers a run can use — AdamW (the default), Adam, SGD with
//! momentum and Adafactor, all mlx-rs's — behind one type, so that the loop
//! and the checkpoints never ask which. Their whole state (moments, momentum
//! buffers, Adafactor's factored statistics and step) is saved for exact
//! resume.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use mlx_rs::module::ModuleParameters;
use mlx_rs::optimizers::{Adafactor, Adam, AdamW, Optimizer, OptimizerState, Sgd};
use mlx_rs::Array;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::error::{Error, Result};
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay.
    #[default]
    Adamw,
    Adam,
    /// Stochastic gradient descent with momentum (`momentum`, 0 for none).
    Sgd,
    /// Factored second moments: far less optimizer memory for large
    /// matrices (full fine-tuning); a fixed learning rate as configured.
    Adafactor,
}

impl OptimizerKind {
    pub const NAMES: [&'static str; 4] = ["adamw", "adam", "sgd", "adafactor"];

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "adamw" => Ok(Self::Adamw),
            "adam" => Ok(Self::Adam),
            "sgd" => Ok(Self::Sgd),
            "adafactor" => Ok(Self::Adafactor),
            other => Err(Error::Invalid(format!(
                "optimizer `{other}` is not known (adamw, adam, sgd, adafactor)"
            ))),
        }
    }
}

pub enum TrainOptimizer {
    AdamW(AdamW),
    Adam(Adam),
    Sgd(Sgd),
    Adafactor(Adafactor),
}

macro_rules! each {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            TrainOptimizer::AdamW($o) => $body,
            TrainOptimizer::Adam($o) => $body,
            TrainOptimizer::Sgd($o) => $body,
            TrainOptimizer::Adafactor($o) => $body,
        }
    };
}

impl TrainOptimizer {
    pub fn new(config: &TrainConfig) -> Result<Self> {
        let lr = config.learning_rate;
        Ok(match config.optimizer {
            OptimizerKind::Adamw => {
                let mut o = AdamW::new(lr);
                o.weight_decay = Array::from_f32(config.weight_decay);
                Self::AdamW(o)
            }
            OptimizerKind::Adam => Self::Adam(Adam::new(lr)),
            OptimizerKind::Sgd => {
                let mut o = Sgd::new(lr);
                o.momentum = config.momentum;
                o.weight_decay = config.weight_decay;
                Self::Sgd(o)
            }
            OptimizerKind::Adafactor => {
                let mut o =
                    Adafactor::new().map_err(|e| Error::Invalid(format!("adafactor: {e}")))?;
                // The schedule sets the rate; no relative step, no scaling
                // by the parameters' size.
                o.lr = Some(lr);
                o.relative_step = false;
                o.scale_parameter = false;
                o.weight_decay = config.weight_decay;
                Self::Adafactor(o)
            }
        })
    }

    pub fn set_learning_rate(&mut self, lr: f32) {
        match self {
            Self::AdamW(o) => o.lr = Array::from_f32(lr),
            Self::Adam(o) => o.lr = Array::from_f32(lr),
            Self::Sgd(o) => o.lr = lr,
            Self::Adafactor(o) => o.lr = Some(lr),
        }
    }

    pub fn update(&mut self, model: &mut Model, grads: &HashMap<Rc<str>, Array>) -> Result<()> {
        each!(self, o => o.update(model, grads))?;
        Ok(())
    }

    /// Every array of the state (to evaluate them with the parameters).
    pub fn state_arrays(&mut self) -> Result<Vec<Array>> {
        let flat = each!(self, o => o.state_mut().flatten().map(|v| v.into_iter().map(|(_, a)| a.clone()).collect::<Vec<_>>()));
        flat.map_err(|e| Error::Invalid(format!("optimizer state: {e}")))
    }

    pub fn save(&mut self, path: &Path) -> Result<()> {
        each!(self, o => o.state_mut().save_safetensors(path))
            .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", path.display())))
    }

    /// Restores the state saved by [`TrainOptimizer::save`] for `model`'s
    /// trainable parameters.
    pub fn load(&mut self, path: &Path, model: &Model) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Invalid(format!(
                "{}: not this run's optimizer state: {e}",
                path.display()
            ))
        };
        if let Self::Adafactor(o) = self {
            // mlx-rs 0.33's Adafactor state reader keeps only the last dotted
            // part of each parameter's name, merging them all; so the state
            // is laid out by a throwaway update of copies of the parameters
            // and every entry is then overwritten from the file.
            let saved = crate::files::load_arrays(path)?;
            for (key, p) in model.trainable_parameters().flatten() {
                let mut scratch = p.clone();
                let zero = mlx_rs::ops::zeros_like(p).map_err(|e| bad(&e))?;
                o.update_single(&key, &zero, &mut scratch)
                    .map_err(|e| bad(&e))?;
            }
            let slots = o.state_mut().flatten_mut().map_err(|e| bad(&e))?;
            if slots.len() != saved.len() {
                return Err(bad(&format!(
                    "{} arrays, this run has {}",
                    saved.len(),
                    slots.len()
                )));
            }
            for (key, slot) in slots {
                *slot = saved
                    .get(&*key)
                    .ok_or_else(|| bad(&format!("`{key}` is missing")))?
                    .clone();
            }
            return Ok(());
        }
        each!(self, o => o.state_mut().load_safetensors(path)).map_err(|e| bad(&e))
    }
}
