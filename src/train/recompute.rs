//! Gradient checkpointing, layer by layer: the loss and the trainable
//! parameters' gradients, as `nn::value_and_grad` gives them, while only
//! each decoder layer's input stays alive between the forward and the
//! backward pass (B × L × hidden per layer, instead of everything every
//! layer's ops save).
//!
//! 1. Forward through the layers, evaluating each output (so no graph is
//!    kept) and keeping the inputs of the layers that have trained
//!    parameters.
//! 2. The final norm, head and loss, differentiated with respect to the last
//!    hidden states.
//! 3. From the last layer down to the first trained one: run the layer again
//!    on its saved input and take its vector-Jacobian product with the
//!    gradient from above — the gradient for the layer below and those of
//!    the layer's own trained parameters — evaluated before the next layer.
//!
//! The price is one more forward pass of the trained layers. Dropout masks
//! are drawn from a seed per layer, so the recomputation sees the masks the
//! forward pass used.

use std::collections::HashMap;
use std::rc::Rc;

use mlx_rs::error::Exception;
use mlx_rs::module::{update_parameters, ModuleParameters};
use mlx_rs::Array;

use super::trainer::masked_mean;
use crate::error::{Error, Result};
use crate::eval::nll_from_hidden;
use crate::kernels::CrossEntropyRows;
use crate::model::Model;

/// Each trainable parameter's gradient, by its flattened name.
pub type Gradients = HashMap<Rc<str>, Array>;

/// One batch: inputs, targets, mask of trained tokens, packed segments.
pub type BatchArrays<'a> = (&'a Array, &'a Array, &'a Array, Option<&'a Array>);

/// The masked mean cross-entropy of the batch and the gradient of every
/// trainable parameter (keyed as `ModuleParameters::flatten` names them),
/// recomputing each trained layer's activations in the backward pass.
/// `seed` makes the dropout masks of both passes the same.
pub fn checkpointed_value_and_grad(
    model: &mut Model,
    (inputs, targets, mask, segments): BatchArrays<'_>,
    seed: u64,
) -> Result<(Array, Gradients)> {
    let head = |model: &mut Model, h: &Array| -> std::result::Result<Vec<Array>, Exception> {
        let normed = model.final_norm(h)?;
        let rows = CrossEntropyRows {
            mask: Some(mask),
            differentiated: true,
        };
        let nll = nll_from_hidden(model, &normed, targets, rows)?;
        Ok(vec![masked_mean(&nll, mask)?])
    };
    let (mut outputs, grads) = checkpointed(model, inputs, segments, seed, head)?;
    Ok((outputs.swap_remove(0), grads))
}

/// Any loss over the last decoder layer's output, checkpointed as above:
/// `head` maps that output (B, L, hidden; before the final norm) to the
/// loss, first, and figures that ride along without a gradient (a
/// preference batch's rewards), returned in the same order.
pub fn checkpointed<H>(
    model: &mut Model,
    inputs: &Array,
    segments: Option<&Array>,
    seed: u64,
    mut head: H,
) -> Result<(Vec<Array>, Gradients)>
where
    H: FnMut(&mut Model, &Array) -> std::result::Result<Vec<Array>, Exception>,
{
    let trainable: HashMap<Rc<str>, Array> = model
        .trainable_parameters()
        .flatten()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    let layers = model.num_layers();
    let prefixes: Vec<String> = (0..layers).map(|i| model.layer_prefix(i)).collect();
    let mut by_layer: Vec<Vec<Rc<str>>> = vec![Vec::new(); layers];
    for key in trainable.keys() {
        let layer = prefixes.iter().position(|p| key.starts_with(p.as_str()));
        match layer {
            Some(i) => by_layer[i].push(key.clone()),
            None => {
                return Err(Error::Invalid(format!(
                    "gradient checkpointing trains parameters inside the decoder layers only; \
                     `{key}` is outside them"
                )))
            }
        }
    }
    for keys in &mut by_layer {
        keys.sort(); // a fixed order: the same run twice is the same bits
    }
    let Some(first_trained) = by_layer.iter().position(|k| !k.is_empty()) else {
        return Err(Error::Invalid("nothing to train".into()));
    };
    let layer_seed = |i: usize| seed.wrapping_mul(1_000_003).wrapping_add(i as u64);

    // 1. Forward, keeping the trained layers' inputs.
    let mut h = model.layer_input(inputs)?;
    let mut saved: Vec<Array> = Vec::with_capacity(layers - first_trained);
    for i in 0..layers {
        if i >= first_trained {
            saved.push(h.clone());
        }
        mlx_rs::random::seed(layer_seed(i))?;
        h = model.layer_forward(i, &h, segments)?;
        h.eval()?;
    }

    // 2. The loss and its gradient with respect to the last hidden states;
    //    the figures leave the traced function the way value_and_grad's
    //    auxiliary outputs do, so only the loss has a cotangent.
    let mut figures = Vec::new();
    let (loss, mut grad_h) = {
        let traced = |args: &[Array]| -> std::result::Result<Vec<Array>, Exception> {
            let mut outputs = head(model, &args[0])?;
            figures = outputs.split_off(1);
            Ok(outputs)
        };
        let (values, grads) = mlx_rs::transforms::fallible_vjp(
            traced,
            std::slice::from_ref(&h),
            &[Array::from_f32(1.0)],
        )?;
        (values[0].clone(), grads[0].clone())
    };
    let pending: Vec<&Array> = [&loss, &grad_h].into_iter().chain(&figures).collect();
    mlx_rs::transforms::eval(pending)?;

    // 3. Backward, one layer at a time.
    let mut grads: Gradients = HashMap::with_capacity(trainable.len());
    for i in (first_trained..layers).rev() {
        let keys = &by_layer[i];
        let mut primals = vec![saved.pop().expect("one input per trained layer")];
        primals.extend(keys.iter().map(|k| trainable[k].clone()));
        let layer = |args: &[Array]| -> std::result::Result<Vec<Array>, Exception> {
            update_parameters(model, keys.iter().cloned().zip(args[1..].iter().cloned()));
            mlx_rs::random::seed(layer_seed(i))?;
            Ok(vec![model.layer_forward(i, &args[0], segments)?])
        };
        let (_, vjps) =
            mlx_rs::transforms::fallible_vjp(layer, &primals, std::slice::from_ref(&grad_h))?;
        let mut vjps = vjps.into_iter();
        grad_h = vjps.next().expect("the input's gradient");
        for (key, grad) in keys.iter().zip(vjps) {
            grads.insert(key.clone(), grad);
        }
        let pending: Vec<&Array> = std::iter::once(&grad_h)
            .chain(keys.iter().map(|k| &grads[k]))
            .collect();
        mlx_rs::transforms::eval(pending)?;
    }
    // The layers hold the traced copies now; give them their parameters back.
    update_parameters(model, trainable);
    let mut outputs = vec![loss];
    outputs.extend(figures);
    Ok((outputs, grads))
}
