//! Renders training events in the terminal: a progress bar, or JSON lines.

use finetune::train::{Observer, TrainEvent};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with loss, speed, memory and ETA; evaluations and the end
/// are printed above it.
pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar }
    }
}

fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Observer for TerminalProgress {
    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                total_steps,
                train_examples,
                valid_examples,
                trainable_parameters,
                total_parameters,
                resumed_from_step,
                warnings,
                method,
                ..
            } => {
                let unit = match method {
                    m if m.is_preference() => "pairs",
                    finetune::train::Method::Grpo => "prompts",
                    _ => "examples",
                };
                for w in warnings {
                    self.bar.println(format!("warning: {w}"));
                }
                if let Some(step) = resumed_from_step {
                    self.bar
                        .println(format!("resuming from the checkpoint at step {step}"));
                }
                self.bar.println(format!(
                    "training {} of {} parameters ({:.3}%) on {train_examples} {unit} ({valid_examples} for validation)",
                    trainable_parameters,
                    total_parameters,
                    100.0 * *trainable_parameters as f64 / *total_parameters as f64
                ));
                self.bar.set_length(*total_steps as u64);
                self.bar.set_prefix("step");
            }
            TrainEvent::Step {
                step,
                epoch,
                loss,
                learning_rate,
                tokens_per_second,
                eta_seconds,
                mlx_peak_bytes,
                preference,
                grpo,
                ..
            } => {
                self.bar.set_position(*step as u64);
                let mut pairs = preference.map_or(String::new(), |p| {
                    format!(" | margin {:.3} | acc {:.0}%", p.margin, p.accuracy * 100.0)
                });
                if let Some(g) = grpo {
                    pairs = format!(
                        " | reward {:.3} ± {:.3} | KL {} | {:.0} tokens",
                        g.reward_mean,
                        g.reward_std,
                        g.kl.map_or("-".into(), |k| format!("{k:.4}")),
                        g.completion_length
                    );
                }
                self.bar.set_message(format!(
                    "epoch {epoch:.2} | loss {loss:.4}{pairs} | lr {learning_rate:.2e} | {tokens_per_second:.0} tok/s | peak {:.2} GiB | ETA {}",
                    gib(*mlx_peak_bytes as f64),
                    duration(*eta_seconds)
                ));
            }
            TrainEvent::Eval {
                step,
                val_loss,
                best,
                preference,
                grpo,
            } => {
                let mark = if *best { " (best)" } else { "" };
                if let Some(g) = grpo {
                    let parts: Vec<String> = g
                        .rewards
                        .iter()
                        .map(|(name, mean)| format!("{name} {mean:.3}"))
                        .collect();
                    self.bar.println(format!(
                        "step {step}: validation reward {:.4}{mark} over {} prompts (greedy; {}; {:.0} tokens)",
                        g.reward_mean,
                        g.completions,
                        parts.join(", "),
                        g.completion_length
                    ));
                    return;
                }
                let pairs = preference.map_or(String::new(), |p| {
                    format!(
                        "; rewards chosen {:.3}, rejected {:.3}, margin {:.3}, accuracy {:.1}% over {} pairs",
                        p.chosen_reward,
                        p.rejected_reward,
                        p.margin,
                        p.accuracy * 100.0,
                        p.pairs
                    )
                });
                self.bar.println(format!(
                    "step {step}: validation loss {val_loss:.4}{mark}{pairs}"
                ));
            }
            TrainEvent::Checkpoint { path, .. } => {
                self.bar.println(format!("adapters saved to {path}"));
            }
            TrainEvent::Finished { summary } => {
                self.bar.finish_and_clear();
                eprintln!(
                    "done: {} steps in {}, final loss {}, {} trained tokens at {:.1} tokens/s, MLX peak {:.2} GiB",
                    summary.steps,
                    duration(summary.seconds),
                    summary.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
                    summary.trained_tokens,
                    summary.tokens_per_second,
                    gib(summary.peak_memory_bytes as f64)
                );
            }
            TrainEvent::Stopped { step, reason } => {
                self.bar.abandon();
                eprintln!("stopped at step {step}: {reason}");
            }
            TrainEvent::Failed { .. } => self.bar.abandon(),
            // The launcher reports failed ranks itself.
            TrainEvent::Hosts { .. } => {}
        }
    }
}

/// Prints each event as one JSON line on stdout.
pub struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&mut self, event: &TrainEvent) {
        println!("{}", serde_json::to_string(event).expect("serializable"));
    }
}

/// Sends each event to several observers.
pub struct Fanout<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Fanout<'_> {
    fn on_event(&mut self, event: &TrainEvent) {
        for o in self.0.iter_mut() {
            o.on_event(event);
        }
    }
}
