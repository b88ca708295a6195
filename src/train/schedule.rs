//! Learning-rate schedules: linear warm-up, then constant, linear decay or
//! cosine decay to `final_fraction` of the peak.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    Linear,
    #[default]
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak: f32,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Where decaying schedules end, as a fraction of `peak`.
    pub final_fraction: f32,
}

impl Schedule {
    /// The rate for 0-based `step`.
    pub fn at(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f32;
        let progress = ((step - self.warmup_steps) as f32 / span).min(1.0);
        let floor = self.peak * self.final_fraction;
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Linear => self.peak - (self.peak - floor) * progress,
            ScheduleKind::Cosine => {
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            peak: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            final_fraction: 0.0,
        }
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = schedule(ScheduleKind::Cosine);
        assert!((s.at(0) - 1e-4).abs() < 1e-9);
        assert!((s.at(9) - 1e-3).abs() < 1e-9);
    }

    #[test]
    fn decays_reach_their_floor_at_the_end() {
        assert!((schedule(ScheduleKind::Constant).at(109) - 1e-3).abs() < 1e-9);
        let linear = schedule(ScheduleKind::Linear);
        assert!((linear.at(60) - 5e-4).abs() < 1e-8);
        let cosine = schedule(ScheduleKind::Cosine);
        assert!((cosine.at(60) - 5e-4).abs() < 1e-8);
        assert!(cosine.at(110) < 1e-9);
    }
}
