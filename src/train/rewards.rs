//! GRPO's reward functions, written in YAML:
//!
//! ```yaml
//! rewards:
//!   - exact_match: {pattern: "answer is (-?[0-9.,]+)"}   # vs the record's `answer`
//!   - regex: {pattern: "^<think>.*</think>", weight: 0.2}
//!   - length: {target: 64, weight: 0.1}
//! ```
//!
//! Each scores a completion in [0, 1]; a completion's reward is the
//! weighted sum. Pure functions of the text, so they are tested alone.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One reward function as configured (in YAML, a one-key mapping from its
/// kind to its settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RewardEntry", into = "RewardEntry")]
pub enum RewardSpec {
    /// 1 when the completion's answer equals the record's `answer`: the
    /// last match of `pattern` (its first group, or the whole match), else
    /// the whole completion. Both sides are trimmed and compared as numbers
    /// when both are numbers (`1,000` = `1000.0`). An answer holding `####`
    /// (GSM8K's convention) is the text after it.
    ExactMatch {
        pattern: Option<String>,
        weight: f32,
    },
    /// 1 when `pattern` matches somewhere in the completion (`(?s)` lets `.`
    /// cross lines).
    Regex { pattern: String, weight: f32 },
    /// 1 at `target` tokens, falling linearly to 0 at 0 and 2 × `target`.
    Length { target: usize, weight: f32 },
}

fn one() -> f32 {
    1.0
}

/// The YAML shape of a [`RewardSpec`]: exactly one of the keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewardEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact_match: Option<ExactMatchBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<RegexBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<LengthBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactMatchBody {
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default = "one")]
    weight: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexBody {
    pattern: String,
    #[serde(default = "one")]
    weight: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthBody {
    target: usize,
    #[serde(default = "one")]
    weight: f32,
}

impl TryFrom<RewardEntry> for RewardSpec {
    type Error = String;
    fn try_from(e: RewardEntry) -> std::result::Result<Self, String> {
        match (e.exact_match, e.regex, e.length) {
            (Some(b), None, None) => Ok(Self::ExactMatch {
                pattern: b.pattern,
                weight: b.weight,
            }),
            (None, Some(b), None) => Ok(Self::Regex {
                pattern: b.pattern,
                weight: b.weight,
            }),
            (None, None, Some(b)) => Ok(Self::Length {
                target: b.target,
                weight: b.weight,
            }),
            _ => Err("each reward is one of exact_match, regex or length (e.g. `- regex: {pattern: '\\d'}`)".into()),
        }
    }
}

impl From<RewardSpec> for RewardEntry {
    fn from(spec: RewardSpec) -> Self {
        match spec {
            RewardSpec::ExactMatch { pattern, weight } => Self {
                exact_match: Some(ExactMatchBody { pattern, weight }),
                ..Self::default()
            },
            RewardSpec::Regex { pattern, weight } => Self {
                regex: Some(RegexBody { pattern, weight }),
                ..Self::default()
            },
            RewardSpec::Length { target, weight } => Self {
                length: Some(LengthBody { target, weight }),
                ..Self::default()
            },
        }
    }
}

impl RewardSpec {
    /// The name shown beside its mean in progress reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ExactMatch { .. } => "exact_match",
            Self::Regex { .. } => "regex",
            Self::Length { .. } => "length",
        }
    }

    /// Parses the CLI's short form: `exact_match`, `exact_match=PATTERN`,
    /// `regex=PATTERN`, `length=TOKENS`, each optionally `@WEIGHT` at the end.
    pub fn parse_flag(text: &str) -> std::result::Result<Self, String> {
        let (body, weight) = match text.rsplit_once('@') {
            Some((body, w)) if w.parse::<f32>().is_ok() => (body, w.parse::<f32>().unwrap_or(1.0)),
            _ => (text, 1.0),
        };
        let (kind, value) = match body.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (body, None),
        };
        match (kind, value) {
            ("exact_match", pattern) => Ok(Self::ExactMatch {
                pattern: pattern.map(str::to_string),
                weight,
            }),
            ("regex", Some(pattern)) => Ok(Self::Regex {
                pattern: pattern.into(),
                weight,
            }),
            ("length", Some(n)) => n
                .parse()
                .map(|target| Self::Length { target, weight })
                .map_err(|_| format!("`{text}`: length=TOKENS needs a whole number")),
            _ => Err(format!(
                "`{text}`: expected exact_match[=PATTERN], regex=PATTERN or length=TOKENS (each optionally @WEIGHT)"
            )),
        }
    }
}

/// The configured rewards, their patterns compiled once.
#[derive(Debug, Clone)]
pub struct Rewards {
    scorers: Vec<(Scorer, f32)>,
    names: Vec<&'static str>,
}

#[derive(Debug, Clone)]
enum Scorer {
    ExactMatch(Option<Regex>),
    Regex(Regex),
    Length(usize),
}

fn compile(pattern: &str, which: usize) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| {
        Error::Invalid(format!(
            "rewards[{which}]: the pattern `{pattern}` is not a valid regular expression: {e}"
        ))
    })
}

impl Rewards {
    pub fn new(specs: &[RewardSpec]) -> Result<Self> {
        if specs.is_empty() {
            return Err(Error::Invalid(
                "method grpo needs at least one reward (rewards: in the YAML, or --reward exact_match)"
                    .into(),
            ));
        }
        let mut scorers = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let (scorer, weight) = match spec {
                RewardSpec::ExactMatch { pattern, weight } => (
                    Scorer::ExactMatch(pattern.as_deref().map(|p| compile(p, i)).transpose()?),
                    *weight,
                ),
                RewardSpec::Regex { pattern, weight } => {
                    (Scorer::Regex(compile(pattern, i)?), *weight)
                }
                RewardSpec::Length { target, weight } => {
                    if *target == 0 {
                        return Err(Error::Invalid(format!(
                            "rewards[{i}]: length's target must be at least 1 token"
                        )));
                    }
                    (Scorer::Length(*target), *weight)
                }
            };
            if !weight.is_finite() {
                return Err(Error::Invalid(format!(
                    "rewards[{i}]: the weight must be a number"
                )));
            }
            scorers.push((scorer, weight));
        }
        Ok(Self {
            names: specs.iter().map(RewardSpec::name).collect(),
            scorers,
        })
    }

    /// Whether a reward compares with the record's `answer`.
    pub fn needs_answer(&self) -> bool {
        self.scorers
            .iter()
            .any(|(s, _)| matches!(s, Scorer::ExactMatch(_)))
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Each function's score of one completion (unweighted, in [0, 1]).
    pub fn scores(&self, completion: &str, tokens: usize, answer: Option<&str>) -> Vec<f32> {
        self.scorers
            .iter()
            .map(|(scorer, _)| match scorer {
                Scorer::ExactMatch(pattern) => {
                    let Some(answer) = answer else { return 0.0 };
                    let got = match pattern {
                        Some(p) => match last_match(p, completion) {
                            Some(text) => text,
                            None => return 0.0,
                        },
                        None => completion,
                    };
                    f32::from(same_answer(got, reference_answer(answer)))
                }
                Scorer::Regex(p) => f32::from(p.is_match(completion)),
                Scorer::Length(target) => {
                    let t = *target as f32;
                    (1.0 - (tokens as f32 - t).abs() / t).max(0.0)
                }
            })
            .collect()
    }

    /// The weighted sum of `scores`.
    pub fn total(&self, scores: &[f32]) -> f32 {
        self.scorers
            .iter()
            .zip(scores)
            .map(|((_, w), s)| w * s)
            .sum()
    }
}

/// The last match of `pattern` in `text`: its first group when it has one.
fn last_match<'a>(pattern: &Regex, text: &'a str) -> Option<&'a str> {
    let caps = pattern.captures_iter(text).last()?;
    caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str())
}

/// The part of a reference answer to compare: after GSM8K's `####`.
fn reference_answer(answer: &str) -> &str {
    answer.rsplit_once("####").map_or(answer, |(_, tail)| tail)
}

fn same_answer(a: &str, b: &str) -> bool {
    let (a, b) = (normalise(a), normalise(b));
    match (number(&a), number(&b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

/// Trimmed, inner whitespace collapsed, a trailing full stop dropped.
fn normalise(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches('.').to_string()
}

/// `s` as a number, allowing thousands separators and a leading `$`.
fn number(s: &str) -> Option<f64> {
    let cleaned: String = s
        .trim_start_matches('$')
        .chars()
        .filter(|&c| c != ',')
        .collect();
    cleaned.parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewards(specs: &[RewardSpec]) -> Rewards {
        Rewards::new(specs).unwrap()
    }

    #[test]
    fn exact_match_compares_the_extracted_answer_with_the_reference() {
        let r = rewards(&[RewardSpec::ExactMatch {
            pattern: Some(r"answer is (\S+)".into()),
            weight: 1.0,
        }]);
        let reference = Some("Natalia sold 48/2 = 24 clips.\n#### 1,024");
        assert_eq!(r.scores("so the answer is 1024.", 6, reference), [1.0]);
        assert_eq!(r.scores("so the answer is 1024", 6, reference), [1.0]);
        assert_eq!(
            r.scores("answer is 3, no, the answer is 1024.0", 9, reference),
            [1.0]
        );
        assert_eq!(r.scores("the answer is 1025", 6, reference), [0.0]);
        assert_eq!(r.scores("no pattern here: 1024", 6, reference), [0.0]);
        assert_eq!(r.scores("the answer is 1024", 6, None), [0.0]);
        let whole = rewards(&[RewardSpec::ExactMatch {
            pattern: None,
            weight: 1.0,
        }]);
        assert_eq!(whole.scores("  Paris  ", 2, Some("Paris")), [1.0]);
        assert_eq!(whole.scores("Paris, France", 3, Some("Paris")), [0.0]);
        assert!(whole.needs_answer());
    }

    #[test]
    fn regex_and_length_score_the_text_and_the_token_count() {
        let r = rewards(&[
            RewardSpec::Regex {
                pattern: r"(?s)^<think>.*</think>".into(),
                weight: 0.5,
            },
            RewardSpec::Length {
                target: 10,
                weight: 2.0,
            },
        ]);
        let s = r.scores("<think>\nhm\n</think> 4", 10, None);
        assert_eq!(s, [1.0, 1.0]);
        assert_eq!(r.total(&s), 2.5);
        assert_eq!(r.scores("4", 5, None), [0.0, 0.5]);
        assert_eq!(r.scores("4", 25, None), [0.0, 0.0]);
        assert!(!r.needs_answer());
        assert_eq!(r.names(), ["regex", "length"]);
    }

    #[test]
    fn yaml_and_flags_give_the_same_specs() {
        let yaml = "- exact_match: {pattern: 'is (\\d+)'}\n- regex: {pattern: a+, weight: 0.2}\n- length: {target: 64}\n";
        let specs: Vec<RewardSpec> = serde_yaml::from_str(yaml).unwrap();
        let flags: Vec<RewardSpec> = ["exact_match=is (\\d+)", "regex=a+@0.2", "length=64"]
            .iter()
            .map(|f| RewardSpec::parse_flag(f).unwrap())
            .collect();
        assert_eq!(specs, flags);
        let round_trip: Vec<RewardSpec> =
            serde_yaml::from_str(&serde_yaml::to_string(&specs).unwrap()).unwrap();
        assert_eq!(round_trip, specs);
        let two = serde_yaml::from_str::<Vec<RewardSpec>>(
            "- {regex: {pattern: a}, length: {target: 3}}\n",
        );
        assert!(two.unwrap_err().to_string().contains("one of exact_match"));
        assert!(RewardSpec::parse_flag("length=many").is_err());
        assert!(RewardSpec::parse_flag("bleu").is_err());
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let err = Rewards::new(&[RewardSpec::Regex {
            pattern: "(".into(),
            weight: 1.0,
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rewards[0]") && err.contains("not a valid regular expression"),
            "{err}"
        );
        assert!(Rewards::new(&[])
            .unwrap_err()
            .to_string()
            .contains("at least one reward"));
        let zero = Rewards::new(&[RewardSpec::Length {
            target: 0,
            weight: 1.0,
        }]);
        assert!(zero.is_err());
    }
}
