//! A run's charts as image files (`ft report`): training loss (each report
//! and smoothed), validation loss, and the learning rate, drawn with
//! plotters from the run's `events.jsonl` into PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::train::TrainEvent;

/// The series a report draws.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    /// (step, training loss) per report.
    pub train: Vec<(f64, f64)>,
    /// (step, validation loss).
    pub valid: Vec<(f64, f64)>,
    /// (step, learning rate).
    pub learning_rate: Vec<(f64, f64)>,
}

impl Series {
    pub fn from_events(events: &[TrainEvent]) -> Self {
        let mut s = Series::default();
        for e in events {
            match e {
                TrainEvent::Step {
                    step,
                    loss,
                    learning_rate,
                    ..
                } => {
                    s.train.push((*step as f64, *loss as f64));
                    s.learning_rate.push((*step as f64, *learning_rate as f64));
                }
                TrainEvent::Eval { step, val_loss, .. } => {
                    s.valid.push((*step as f64, *val_loss as f64))
                }
                _ => {}
            }
        }
        s
    }

    /// Exponential moving average of the training loss (what the eye reads
    /// through the noise), debiased at the start like Adam's moments.
    pub fn smoothed(&self, weight: f64) -> Vec<(f64, f64)> {
        let mut ema = 0.0;
        self.train
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                ema = weight * ema + (1.0 - weight) * y;
                (x, ema / (1.0 - weight.powi(i as i32 + 1)))
            })
            .collect()
    }
}

/// Reads a run's `events.jsonl` (a torn last line, from a killed run, is
/// ignored).
pub fn read_events(path: &Path) -> Result<Vec<TrainEvent>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Fonts plotters may use, in order of preference (Linux, then macOS).
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = FONT_FILES
                .iter()
                .find(|p| Path::new(p).exists())
                .ok_or_else(|| {
                    format!(
                        "no font to draw text with; install DejaVu Sans (Debian: fonts-dejavu-core), looked for {}",
                        FONT_FILES.join(", ")
                    )
                })?;
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            // plotters keeps fonts for the whole process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path}: not a usable font"))
        })
        .clone()
        .map_err(Error::Invalid)
}

/// Draws `series` into `<stem>.png` and `<stem>.svg`; returns both paths.
pub fn write_charts(series: &Series, title: &str, stem: &Path) -> Result<(PathBuf, PathBuf)> {
    if series.train.is_empty() {
        return Err(Error::Invalid(format!(
            "{title}: no training steps recorded yet, so there is nothing to draw"
        )));
    }
    register_font()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let size = (1200, 800);
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        series,
        title,
    )
    .map_err(|e| Error::Invalid(format!("{}: cannot draw: {e}", png.display())))?;
    draw(
        SVGBackend::new(&svg, size).into_drawing_area(),
        series,
        title,
    )
    .map_err(|e| Error::Invalid(format!("{}: cannot draw: {e}", svg.display())))?;
    Ok((png, svg))
}

fn range(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 1e-3).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &Series,
    title: &str,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 26)).map_err(err)?;
    let (upper, lower) = root.split_vertically(500);
    let last_step = series
        .train
        .iter()
        .chain(&series.valid)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let steps = 0.0..last_step * 1.02;
    let (lo, hi) = range(series.train.iter().chain(&series.valid).map(|p| p.1));

    let blue = RGBColor(56, 108, 176);
    let orange = RGBColor(230, 120, 20);
    let green = RGBColor(40, 150, 70);
    let mut loss = ChartBuilder::on(&upper)
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(steps.clone(), lo..hi)
        .map_err(err)?;
    loss.configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("loss")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    loss.draw_series(LineSeries::new(series.train.clone(), blue.mix(0.35)))
        .map_err(err)?
        .label("training loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.mix(0.35)));
    loss.draw_series(LineSeries::new(series.smoothed(0.8), blue.stroke_width(3)))
        .map_err(err)?
        .label("training loss, smoothed")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(3)));
    if !series.valid.is_empty() {
        loss.draw_series(LineSeries::new(
            series.valid.clone(),
            orange.stroke_width(2),
        ))
        .map_err(err)?;
        loss.draw_series(
            series
                .valid
                .iter()
                .map(|&p| Circle::new(p, 5, orange.filled())),
        )
        .map_err(err)?
        .label("validation loss")
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, orange.filled()));
    }
    loss.configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    let (lr_lo, lr_hi) = range(series.learning_rate.iter().map(|p| p.1));
    let mut lr = ChartBuilder::on(&lower)
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(steps, lr_lo.max(0.0)..lr_hi)
        .map_err(err)?;
    lr.configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("learning rate")
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    lr.draw_series(LineSeries::new(
        series.learning_rate.clone(),
        green.stroke_width(2),
    ))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
