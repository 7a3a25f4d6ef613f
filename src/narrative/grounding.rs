//! The grounding check: a text may only state numbers it has computed figures for, and a
//! segment's name may only claim what its KPIs support.
//!
//! It owns reading numbers out of prose and the lexicon of claims; it does not decide what
//! happens to failing text (the narrators do: regenerate, then fall back to the built-in
//! text). Every failure is a typed [`Violation`] whose `Display` is a sentence a model can act
//! on, because the violations are sent back to the model verbatim when it is asked to try
//! again.
//!
//! # Numbers
//!
//! [`numbers_in`] finds every number a reader would take as a figure: integers, decimals,
//! thousands separators (`12,345`), percentages (`12%`, `12 %`, `12 percent`), currency
//! (`$1,234`, `€12.50`), signs (`-0.05`, `−0.05`, `+0.9`), magnitudes (`12.3k`, `1.2M`,
//! `3bn`) and multipliers (`3x`). It skips digits that belong to words or ids (`W36`, `3D`,
//! `p95`, `2nd`), ISO week labels (`2026-W41`) and segment ids (`segment 3`,
//! `segments 2 and 4`, `#3`).
//!
//! A number is grounded when it equals a cited figure within the rounding the text shows:
//! half a unit of its last digit (`0.42` covers 0.415 to 0.425; `12.3k` covers 12,250 to
//! 12,350). A percentage is compared with a figure shown as a percentage (a share of 0.1234
//! is `12%` or `12.3%`), a plain number with the figure's value. A number written as `0` is
//! grounded only by a figure that is 0 or shown as `0`: rounding a real effect away is a
//! claim of its own.
//!
//! # Names
//!
//! [`check_names`] asks that names be non-empty and unique (case- and space-insensitively),
//! and that every word of the [`LEXICON`] a name uses be supported by the segment's figures
//! against the base's:
//!
//! | words | needs |
//! | --- | --- |
//! | big spender, high spend(er), high value, VIP, premium, whale, top spender, affluent, luxury | monetary median above the base's |
//! | low spend(er), low value, budget, bargain, thrifty, small spender | monetary median below the base's |
//! | loyal, frequent, repeat, habitual, regulars | frequency median above the base's |
//! | one-time, one-off, occasional, infrequent, single purchase | frequency median at most 1 or below the base's |
//! | lapsed, churn(ed/ing), dormant, at risk, inactive, lost, hibernating, win back, sleeping | recency median above the base's or beyond 120 days |
//! | recent, active, new, fresh, engaged | recency median below the base's or within 30 days |
//! | champion(s) | recency below, frequency above and monetary above the base's |
//! | browsers, window shoppers, non-buyers, rarely buy | buyer share below 20% or below the base's |
//! | converters, high converting | conversion rate above the base's |
//!
//! The 120- and 30-day and 20% limits are the built-in store narrator's, so its own names
//! always pass. A segment's KPI is its business KPI (`segment.N.monetary.median` against
//! `base.monetary.median`), else a feature column of the same name (`monetary`, `frequency`,
//! `recency_days`/`recency`, `conversion`: the segment's mean against the base's). A word
//! whose KPI the run does not have at all is an unsupported claim: "VIP" for an Iris cluster
//! says something no figure backs.

use std::fmt;

use serde::Serialize;

use crate::narrative::figures::{Figure, FigureCatalogue};
use crate::narrative::store_names::{ACTIVE_DAYS, BUYER_SHARE_FOR_VALUE, LAPSED_DAYS};

/// Something wrong with a narrator's text, in terms the narrator can fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// A number that matches none of the figures the text cites.
    UngroundedNumber {
        /// The segment whose text it is, when known.
        segment: Option<usize>,
        /// The number as written.
        number: String,
        /// A few words around it, to find it.
        excerpt: String,
        /// The cited figure closest to it, as a hint.
        nearest: Option<FigureHint>,
    },
    /// A segment has an empty name.
    EmptyName {
        /// The segment.
        segment: usize,
    },
    /// Two or more segments have the same name.
    DuplicateName {
        /// The name.
        name: String,
        /// The segments that share it.
        segments: Vec<usize>,
    },
    /// A name uses a word that the segment's figures contradict.
    ContradictedClaim {
        /// The segment.
        segment: usize,
        /// Its name.
        name: String,
        /// The lexicon word found in it.
        term: String,
        /// What the word needs, in words.
        needs: String,
        /// What the figures say instead, in words with their displays.
        evidence: String,
    },
    /// A name uses a word about something the run has no figure for.
    UnsupportedClaim {
        /// The segment.
        segment: usize,
        /// Its name.
        name: String,
        /// The lexicon word found in it.
        term: String,
        /// What the run would need to measure.
        measure: String,
    },
    /// A cited key that is not in the catalogue (or not this segment's or the run's).
    UnknownFigureKey {
        /// The segment whose text cites it.
        segment: usize,
        /// The key.
        key: String,
    },
    /// A segment that should have been described is missing from the answer.
    MissingSegment {
        /// The segment.
        segment: usize,
    },
    /// The answer describes a segment that does not exist or was not asked for.
    UnexpectedSegment {
        /// The segment id given.
        segment: usize,
    },
    /// The answer is not the JSON object asked for.
    MalformedAnswer {
        /// What is wrong with it.
        detail: String,
    },
    /// The model refused or returned nothing.
    NoAnswer {
        /// What it said, if anything.
        detail: String,
    },
}

/// A figure mentioned in a violation, so the fix is one step away.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureHint {
    /// Its key.
    pub key: String,
    /// Its display.
    pub display: String,
}

impl Violation {
    /// The same violation, placed in segment `id` (numbers are checked text by text and
    /// located afterwards).
    pub fn in_segment(self, id: usize) -> Self {
        match self {
            Violation::UngroundedNumber {
                number,
                excerpt,
                nearest,
                ..
            } => Violation::UngroundedNumber {
                segment: Some(id),
                number,
                excerpt,
                nearest,
            },
            other => other,
        }
    }

    /// The segment the violation is about, if it is about one.
    pub fn segment(&self) -> Option<usize> {
        match self {
            Violation::UngroundedNumber { segment, .. } => *segment,
            Violation::EmptyName { segment }
            | Violation::ContradictedClaim { segment, .. }
            | Violation::UnsupportedClaim { segment, .. }
            | Violation::UnknownFigureKey { segment, .. }
            | Violation::MissingSegment { segment }
            | Violation::UnexpectedSegment { segment } => Some(*segment),
            Violation::DuplicateName { .. }
            | Violation::MalformedAnswer { .. }
            | Violation::NoAnswer { .. } => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UngroundedNumber {
                segment,
                number,
                excerpt,
                nearest,
            } => {
                match segment {
                    Some(s) => write!(f, "Segment {s}: the number \"{number}\"")?,
                    None => write!(f, "The number \"{number}\"")?,
                }
                write!(
                    f,
                    " (in \"{excerpt}\") equals none of the figures the text cites; "
                )?;
                match nearest {
                    Some(h) => write!(
                        f,
                        "use a cited figure exactly as displayed (the closest is {} = {}), cite the key it comes from, or remove the number.",
                        h.key, h.display
                    ),
                    None => write!(
                        f,
                        "cite the key of the figure it comes from and write it as displayed, or remove the number."
                    ),
                }
            }
            Violation::EmptyName { segment } => {
                write!(
                    f,
                    "Segment {segment} has an empty name; give it a short name."
                )
            }
            Violation::DuplicateName { name, segments } => write!(
                f,
                "Segments {} share the name \"{name}\"; every segment needs its own name that says what sets it apart.",
                join_ids(segments)
            ),
            Violation::ContradictedClaim {
                segment,
                name,
                term,
                needs,
                evidence,
            } => write!(
                f,
                "Segment {segment}: the name \"{name}\" says \"{term}\", which needs {needs}, but {evidence}; choose words the figures support."
            ),
            Violation::UnsupportedClaim {
                segment,
                name,
                term,
                measure,
            } => write!(
                f,
                "Segment {segment}: the name \"{name}\" says \"{term}\", but this run has no figure for {measure}; remove the word."
            ),
            Violation::UnknownFigureKey { segment, key } => write!(
                f,
                "Segment {segment} cites the key \"{key}\", which is not among the figures given for this segment or the run; cite only keys from the figures given."
            ),
            Violation::MissingSegment { segment } => write!(
                f,
                "Segment {segment} is missing from the answer; describe every segment asked for."
            ),
            Violation::UnexpectedSegment { segment } => write!(
                f,
                "The answer describes segment {segment}, which was not asked for; describe only the segments given."
            ),
            Violation::MalformedAnswer { detail } => write!(
                f,
                "The answer is not the JSON object asked for ({detail}); answer with one JSON object that follows the schema."
            ),
            Violation::NoAnswer { detail } => {
                write!(f, "The model gave no usable answer ({detail}).")
            }
        }
    }
}

fn join_ids(ids: &[usize]) -> String {
    let words: Vec<String> = ids.iter().map(usize::to_string).collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A number as a text states it.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberMention {
    /// As written, sign, currency and unit included (`-$1,234.5`, `12%`, `12.3k`).
    pub written: String,
    /// Byte offset in the text.
    pub start: usize,
    /// Its value in the units written (12% → 12, 12.3k → 12,300).
    pub value: f64,
    /// Half a unit of its last shown digit, in the same units.
    pub tolerance: f64,
    /// Whether it is a percentage.
    pub percent: bool,
}

impl NumberMention {
    /// Whether it states `figure` within its shown rounding.
    pub fn matches(&self, figure: &Figure) -> bool {
        let target = if self.percent {
            if !figure.is_percent() {
                return false;
            }
            figure.value * 100.0
        } else {
            figure.value
        };
        if !target.is_finite() {
            return false;
        }
        if self.value == 0.0 && target != 0.0 {
            let shown = figure.display.trim_end_matches('%');
            return shown == "0" || shown == "-0";
        }
        let slack = 1e-9 * target.abs().max(1.0);
        (self.value - target).abs() <= self.tolerance + slack
    }

    fn distance(&self, figure: &Figure) -> f64 {
        let target = if self.percent && figure.is_percent() {
            figure.value * 100.0
        } else {
            figure.value
        };
        (self.value - target).abs()
    }
}

const CURRENCY: [char; 5] = ['$', '€', '£', '¥', '₹'];
const MINUS: [char; 3] = ['-', '−', '–'];

/// Every number in `text` that reads as a figure (see the module's rules).
pub fn numbers_in(text: &str) -> Vec<NumberMention> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut found = Vec::new();
    // Where the last segment id ended, so "segments 2, 3 and 4" are all ids.
    let mut last_id_end: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let leading_dot = c == '.'
            && chars.get(i + 1).is_some_and(|n| n.1.is_ascii_digit())
            && (i == 0 || !chars[i - 1].1.is_alphanumeric());
        if !c.is_ascii_digit() && !leading_dot {
            i += 1;
            continue;
        }
        let start_index = i;
        // Digits glued to a word are part of an id ("W36", "p95", "v2").
        let glued = i > 0 && {
            let p = chars[i - 1].1;
            p.is_alphabetic() || p == '_'
        };
        // Integer part, with thousands groups only when every group has three digits.
        let mut j = i;
        let mut digits = String::new();
        while j < chars.len() && chars[j].1.is_ascii_digit() {
            digits.push(chars[j].1);
            j += 1;
        }
        // An ISO week label ("2026-W41") is an id, not a figure.
        if digits.len() == 4
            && chars.get(j).is_some_and(|c| c.1 == '-')
            && chars.get(j + 1).is_some_and(|c| c.1 == 'W')
            && chars.get(j + 2).is_some_and(|c| c.1.is_ascii_digit())
        {
            let mut k = j + 2;
            while k < chars.len() && chars[k].1.is_ascii_digit() {
                k += 1;
            }
            i = k;
            continue;
        }
        if digits.len() <= 3 {
            while j + 3 < chars.len() + 1
                && chars.get(j).is_some_and(|c| c.1 == ',')
                && (1..=3).all(|d| chars.get(j + d).is_some_and(|c| c.1.is_ascii_digit()))
                && !chars.get(j + 4).is_some_and(|c| c.1.is_ascii_digit())
            {
                for d in 1..=3 {
                    digits.push(chars[j + d].1);
                }
                j += 4;
            }
        }
        let mut decimals = 0usize;
        let mut fraction = String::new();
        if chars.get(j).is_some_and(|c| c.1 == '.')
            && chars.get(j + 1).is_some_and(|c| c.1.is_ascii_digit())
        {
            j += 1;
            while j < chars.len() && chars[j].1.is_ascii_digit() {
                fraction.push(chars[j].1);
                decimals += 1;
                j += 1;
            }
        }
        // A suffix: a magnitude, a multiplier, or letters that make it an id.
        let mut k = j;
        let mut word = String::new();
        while k < chars.len() && (chars[k].1.is_alphanumeric() || chars[k].1 == '_') {
            word.push(chars[k].1);
            k += 1;
        }
        let scale = match word.as_str() {
            "" | "x" | "×" => Some(1.0),
            "k" | "K" => Some(1e3),
            "M" | "m" | "mn" => Some(1e6),
            "bn" | "B" => Some(1e9),
            _ => None,
        };
        if glued || scale.is_none() {
            i = k.max(j);
            continue;
        }
        let scale = scale.unwrap_or(1.0);
        let mut end = if word.is_empty() { j } else { k };
        if word == "×" || word == "x" {
            end = k;
        }
        // Percent: "12%", "12 %", "12 percent", "12 per cent".
        let mut percent = false;
        let rest: String = chars[end..].iter().map(|c| c.1).take(12).collect();
        for form in ["%", " %", " percent", " per cent"] {
            if let Some(tail) = rest.strip_prefix(form) {
                let after = tail.chars().next();
                if form == "%" || form == " %" || !after.is_some_and(char::is_alphanumeric) {
                    percent = true;
                    end += form.chars().count();
                    break;
                }
            }
        }
        // Sign and currency before it, in either order ("-$5", "$-5").
        let mut begin = start_index;
        let mut negative = false;
        for _ in 0..2 {
            if begin == 0 {
                break;
            }
            let p = chars[begin - 1].1;
            let before = begin.checked_sub(2).map(|b| chars[b].1);
            let sign_position = !before.is_some_and(|b| b.is_alphanumeric());
            if CURRENCY.contains(&p) {
                begin -= 1;
            } else if (MINUS.contains(&p) || p == '+') && sign_position {
                negative = MINUS.contains(&p);
                begin -= 1;
            } else {
                break;
            }
        }
        let end_byte = chars.get(end).map_or(text.len(), |c| c.0);
        let begin_byte = chars[begin].0;
        let written = text[begin_byte..end_byte].to_string();

        // A segment id: "segment 3", "segments 2, 3 and 4", "#3".
        let before = &text[..chars[start_index].0];
        let id_word = id_word_before(before);
        let in_list = last_id_end.is_some_and(|e| is_id_list_gap(&text[e..chars[start_index].0]));
        let is_id = chars
            .get(start_index.wrapping_sub(1))
            .is_some_and(|c| c.1 == '#')
            || id_word.is_some()
            || in_list;
        if is_id && !percent && decimals == 0 && word.is_empty() {
            // Only a plural ("segments 2, 3 and 4") starts a list of ids: after "segment 3,"
            // the next number is a figure again.
            last_id_end = (in_list || id_word == Some(true)).then_some(end_byte);
            i = end;
            continue;
        }
        last_id_end = None;

        let number: f64 = format!(
            "{}{}",
            if digits.is_empty() { "0" } else { &digits },
            if fraction.is_empty() {
                String::new()
            } else {
                format!(".{fraction}")
            }
        )
        .parse()
        .unwrap_or(f64::NAN);
        if number.is_finite() {
            let sign = if negative { -1.0 } else { 1.0 };
            found.push(NumberMention {
                written,
                start: begin_byte,
                value: sign * number * scale,
                tolerance: 0.5 * 10f64.powi(-(decimals as i32)) * scale,
                percent,
            });
        }
        i = end.max(i + 1);
    }
    found
}

/// `Some(plural)` when `before` ends with "segment(s)" or "cluster(s)" and a space.
fn id_word_before(before: &str) -> Option<bool> {
    let trimmed = before.trim_end();
    if trimmed.len() == before.len() {
        return None;
    }
    let word: String = trimmed
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    match word.as_str() {
        "segment" | "cluster" => Some(false),
        "segments" | "clusters" => Some(true),
        _ => None,
    }
}

fn is_id_list_gap(gap: &str) -> bool {
    let words = gap.replace([',', '&'], " ");
    !gap.is_empty()
        && words
            .split_whitespace()
            .all(|w| matches!(w.to_lowercase().as_str(), "and" | "or"))
        && gap.len() <= 6
}

/// Every number in `text` that no `cited` figure states within its rounding.
pub fn check_numbers(text: &str, cited: &[&Figure]) -> Vec<Violation> {
    numbers_in(text)
        .into_iter()
        .filter(|m| !cited.iter().any(|f| m.matches(f)))
        .map(|m| {
            let nearest = cited
                .iter()
                .filter(|f| f.value.is_finite())
                .min_by(|a, b| m.distance(a).total_cmp(&m.distance(b)))
                .map(|f| FigureHint {
                    key: f.key.clone(),
                    display: f.display.clone(),
                });
            Violation::UngroundedNumber {
                segment: None,
                excerpt: excerpt(text, m.start, m.written.len()),
                number: m.written,
                nearest,
            }
        })
        .collect()
}

/// Up to about 30 characters either side of a mention, cut at character boundaries.
fn excerpt(text: &str, start: usize, len: usize) -> String {
    let from = text[..start]
        .char_indices()
        .rev()
        .nth(29)
        .map_or(0, |(b, _)| b);
    let to = text[start + len..]
        .char_indices()
        .nth(30)
        .map_or(text.len(), |(b, _)| start + len + b);
    text[from..to].trim().to_string()
}

/// The KPI a lexicon word talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Net revenue per customer (monetary).
    Monetary,
    /// Orders per customer (frequency).
    Frequency,
    /// Days since the last purchase (recency).
    Recency,
    /// Share of customers who bought.
    BuyerShare,
    /// Purchases per product view.
    Conversion,
}

impl Measure {
    fn words(self) -> &'static str {
        match self {
            Measure::Monetary => "spend (monetary)",
            Measure::Frequency => "purchase frequency",
            Measure::Recency => "days since the last purchase (recency)",
            Measure::BuyerShare => "the share of customers who bought",
            Measure::Conversion => "conversion of views into purchases",
        }
    }

    /// The business KPI key suffix under `segment.N.` and its base key.
    fn business_keys(self) -> (&'static str, &'static str) {
        match self {
            Measure::Monetary => ("monetary.median", "base.monetary.median"),
            Measure::Frequency => ("frequency.median", "base.frequency.median"),
            Measure::Recency => ("recency_days.median", "base.recency_days.median"),
            Measure::BuyerShare => ("buyer_share", "base.buyer_share"),
            Measure::Conversion => ("conversion_rate", "base.conversion_rate"),
        }
    }

    /// Feature columns that measure it in a feature table.
    fn feature_columns(self) -> &'static [&'static str] {
        match self {
            Measure::Monetary => &["monetary"],
            Measure::Frequency => &["frequency"],
            Measure::Recency => &["recency_days", "recency"],
            Measure::BuyerShare => &[],
            Measure::Conversion => &["conversion"],
        }
    }
}

/// What a lexicon word needs of a segment's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Requirement {
    /// The measure is above the base's.
    Above(Measure),
    /// The measure is below the base's.
    Below(Measure),
    /// The measure is above the base's or above an absolute limit.
    AboveOr(Measure, f64),
    /// The measure is below the base's or at most an absolute limit.
    BelowOr(Measure, f64),
    /// Recency below, frequency above and monetary above the base's.
    Champion,
}

/// One entry of the lexicon: words (lower case, hyphens as spaces) and what they need.
#[derive(Debug, Clone, Copy)]
pub struct LexiconEntry {
    /// Phrases, matched on whole words.
    pub phrases: &'static [&'static str],
    /// What they need.
    pub requirement: Requirement,
}

/// The claims names may make only when the figures support them (see the module's table).
pub const LEXICON: &[LexiconEntry] = &[
    LexiconEntry {
        phrases: &[
            "big spender",
            "big spenders",
            "high spend",
            "high spender",
            "high spenders",
            "high spending",
            "high value",
            "vip",
            "vips",
            "premium",
            "whale",
            "whales",
            "top spender",
            "top spenders",
            "affluent",
            "luxury",
        ],
        requirement: Requirement::Above(Measure::Monetary),
    },
    LexiconEntry {
        phrases: &[
            "low spend",
            "low spender",
            "low spenders",
            "low spending",
            "low value",
            "budget",
            "bargain",
            "bargain hunters",
            "thrifty",
            "small spender",
            "small spenders",
        ],
        requirement: Requirement::Below(Measure::Monetary),
    },
    LexiconEntry {
        phrases: &[
            "loyal",
            "loyalists",
            "frequent",
            "repeat",
            "habitual",
            "regulars",
        ],
        requirement: Requirement::Above(Measure::Frequency),
    },
    LexiconEntry {
        phrases: &[
            "one time",
            "one off",
            "occasional",
            "infrequent",
            "single purchase",
        ],
        requirement: Requirement::BelowOr(Measure::Frequency, 1.0),
    },
    LexiconEntry {
        phrases: &[
            "lapsed",
            "churn",
            "churned",
            "churning",
            "churners",
            "dormant",
            "at risk",
            "inactive",
            "lost",
            "hibernating",
            "win back",
            "winback",
            "sleeping",
        ],
        requirement: Requirement::AboveOr(Measure::Recency, LAPSED_DAYS),
    },
    LexiconEntry {
        phrases: &["recent", "active", "new", "fresh", "engaged"],
        requirement: Requirement::BelowOr(Measure::Recency, ACTIVE_DAYS),
    },
    LexiconEntry {
        phrases: &["champion", "champions"],
        requirement: Requirement::Champion,
    },
    LexiconEntry {
        phrases: &[
            "browsers",
            "window shoppers",
            "window shopper",
            "non buyers",
            "rarely buy",
        ],
        requirement: Requirement::BelowOr(Measure::BuyerShare, BUYER_SHARE_FOR_VALUE),
    },
    LexiconEntry {
        phrases: &["converters", "high converting", "high conversion"],
        requirement: Requirement::Above(Measure::Conversion),
    },
];

/// A segment's and the base's figure for a measure.
struct Comparison<'a> {
    own: &'a Figure,
    base: &'a Figure,
}

fn comparison<'a>(
    catalogue: &'a FigureCatalogue,
    segment: usize,
    measure: Measure,
) -> Option<Comparison<'a>> {
    let (own, base) = measure.business_keys();
    if let (Some(own), Some(base)) = (
        catalogue.get(&format!("segment.{segment}.{own}")),
        catalogue.get(base),
    ) {
        return Some(Comparison { own, base });
    }
    measure.feature_columns().iter().find_map(|column| {
        Some(Comparison {
            own: catalogue.get(&format!("segment.{segment}.feature.{column}.mean"))?,
            base: catalogue.get(&format!("base.feature.{column}.mean"))?,
        })
    })
}

/// Words with hyphens, dashes and punctuation as spaces, lower case.
fn words_of(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn contains_phrase(words: &[String], phrase: &str) -> bool {
    let parts: Vec<&str> = phrase.split(' ').collect();
    words
        .windows(parts.len())
        .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
}

/// A name as compared for uniqueness: lower case, words only ("Big-spenders " and
/// "big spenders" are the same name).
pub fn name_key(name: &str) -> String {
    words_of(name).join(" ")
}

/// Names that are empty, shared, or claim what the figures do not support. `names` pairs
/// each segment id with its name.
pub fn check_names(names: &[(usize, &str)], catalogue: &FigureCatalogue) -> Vec<Violation> {
    let mut violations = Vec::new();
    let normal = name_key;
    let mut seen: Vec<String> = Vec::new();
    for (id, name) in names {
        if name.trim().is_empty() {
            violations.push(Violation::EmptyName { segment: *id });
            continue;
        }
        let key = normal(name);
        if seen.contains(&key) {
            continue;
        }
        let sharing: Vec<usize> = names
            .iter()
            .filter(|(_, n)| !n.trim().is_empty() && normal(n) == key)
            .map(|(s, _)| *s)
            .collect();
        if sharing.len() > 1 {
            violations.push(Violation::DuplicateName {
                name: (*name).to_string(),
                segments: sharing,
            });
        }
        seen.push(key);
    }
    for (id, name) in names {
        let words = words_of(name);
        for entry in LEXICON {
            let Some(term) = entry.phrases.iter().find(|p| contains_phrase(&words, p)) else {
                continue;
            };
            if let Some(v) = judge(*id, name, term, entry.requirement, catalogue) {
                violations.push(v);
            }
        }
    }
    violations
}

fn judge(
    id: usize,
    name: &str,
    term: &str,
    requirement: Requirement,
    catalogue: &FigureCatalogue,
) -> Option<Violation> {
    let checks: Vec<(Measure, bool, Option<f64>)> = match requirement {
        Requirement::Above(m) => vec![(m, true, None)],
        Requirement::Below(m) => vec![(m, false, None)],
        Requirement::AboveOr(m, limit) => vec![(m, true, Some(limit))],
        Requirement::BelowOr(m, limit) => vec![(m, false, Some(limit))],
        Requirement::Champion => vec![
            (Measure::Recency, false, None),
            (Measure::Frequency, true, None),
            (Measure::Monetary, true, None),
        ],
    };
    for (measure, above, limit) in checks {
        let Some(c) = comparison(catalogue, id, measure) else {
            return Some(Violation::UnsupportedClaim {
                segment: id,
                name: name.to_string(),
                term: term.to_string(),
                measure: measure.words().to_string(),
            });
        };
        let (own, base) = (c.own.value, c.base.value);
        let holds = if above {
            own > base || limit.is_some_and(|l| own > l)
        } else {
            own < base || limit.is_some_and(|l| own <= l)
        };
        if !holds {
            let direction = if above { "above" } else { "below" };
            let mut needs = format!("{} {direction} the base's", measure.words());
            if let Some(l) = limit {
                let relation = if above { "above" } else { "at most" };
                needs.push_str(&format!(
                    " (or {relation} {})",
                    crate::narrative::reading::figure(l)
                ));
            }
            return Some(Violation::ContradictedClaim {
                segment: id,
                name: name.to_string(),
                term: term.to_string(),
                needs,
                evidence: format!(
                    "{} = {} against {} = {}",
                    c.own.key, c.own.display, c.base.key, c.base.display
                ),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::narrative::figures::Unit;

    fn fig(key: &str, value: f64, unit: Unit) -> Figure {
        Figure::new(key, value, unit)
    }

    fn written(text: &str) -> Vec<String> {
        numbers_in(text).into_iter().map(|m| m.written).collect()
    }

    #[test]
    fn reads_the_number_formats_people_write() {
        assert_eq!(
            written(
                "12,345 customers, 12.3k views, 42% (or 42 %), $1,234.50 and -0.05, −3 and +0.9 SD."
            ),
            [
                "12,345",
                "12.3k",
                "42%",
                "42 %",
                "$1,234.50",
                "-0.05",
                "−3",
                "+0.9"
            ]
        );
        let m = numbers_in("€-12.5 and 3.2M and 7 percent and .5");
        let values: Vec<f64> = m.iter().map(|m| m.value).collect();
        for (got, want) in values.iter().zip([-12.5, 3_200_000.0, 7.0, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{got} {want}");
        }
        assert_eq!(values.len(), 4);
        assert!(m[2].percent);
        assert!((m[1].tolerance - 50_000.0).abs() < 1e-6);
        assert!((m[0].tolerance - 0.05).abs() < 1e-12);
    }

    #[test]
    fn skips_ids_words_and_segment_references() {
        assert!(written("In W36 the p95 of v2 in 3D, the 2nd cohort").is_empty());
        assert!(written("Week 2026-W41 against 2026-W40").is_empty());
        assert!(written("Like segment 3 and Segments 2, 4 and 5, or cluster #7.").is_empty());
        assert_eq!(written("segment 3 holds 40 customers"), ["40"]);
        assert_eq!(written("segment 3 (12%)"), ["12%"]);
        assert_eq!(written("segment 3, 412 customers"), ["412"]);
    }

    #[test]
    fn commas_in_lists_are_not_thousands_separators() {
        assert_eq!(written("sizes 1,2 and 3,4567"), ["1", "2", "3", "4567"]);
        assert_eq!(written("1,234,567 rows"), ["1,234,567"]);
        assert_eq!(written("12345,678"), ["12345", "678"]);
    }

    #[test]
    fn ranges_and_dates_are_separate_positive_numbers() {
        let m = numbers_in("10-20 days");
        assert_eq!(m.iter().map(|m| m.value).collect::<Vec<_>>(), [10.0, 20.0]);
        assert_eq!(written("ends the sentence with 5."), ["5"]);
    }

    #[test]
    fn numbers_match_within_the_rounding_they_show() {
        let silhouette = fig("quality.silhouette", 0.4213, Unit::Number);
        let share = fig("segment.1.share", 0.1234, Unit::Share);
        let size = fig("segment.1.size", 12_345.0, Unit::Count);
        let sd = fig(
            "segment.1.feature.a.standardized_difference",
            -1.34,
            Unit::StandardizedDifference,
        );
        let cited = [&silhouette, &share, &size, &sd];
        for ok in [
            "silhouette 0.42",
            "silhouette 0.421",
            "silhouette 0.4",
            "12% of the base",
            "12.3% of the base",
            "12,345 customers",
            "12345 customers",
            "12.3k customers",
            "12k customers",
            "-1.3 SD",
            "−1.34 SD",
            "0.1234 of the base",
        ] {
            assert!(check_numbers(ok, &cited).is_empty(), "{ok}");
        }
        for bad in [
            "silhouette 0.43",
            "silhouette 0.5",
            "13% of the base",
            "12.4% of the base",
            "12,346 customers",
            "12.4k customers",
            "1.3 SD",
            "42% silhouette",
            "0 customers",
            "in 2025",
        ] {
            assert_eq!(check_numbers(bad, &cited).len(), 1, "{bad}");
        }
    }

    #[test]
    fn a_zero_needs_a_figure_shown_as_zero() {
        let zero = fig("segment.1.revenue", 0.0, Unit::Number);
        let tiny = fig("segment.2.revenue", 0.0004, Unit::Number);
        assert!(check_numbers("revenue 0", &[&zero]).is_empty());
        assert_eq!(check_numbers("revenue 0", &[&tiny]).len(), 1);
    }

    #[test]
    fn ungrounded_numbers_render_as_actionable_sentences() {
        let share = fig("segment.3.share", 0.412, Unit::Share);
        let v = check_numbers("They are 42% of all customers.", &[&share]);
        assert_eq!(v.len(), 1);
        let v = v[0].clone().in_segment(3);
        assert_eq!(v.segment(), Some(3));
        assert_eq!(
            v.to_string(),
            "Segment 3: the number \"42%\" (in \"They are 42% of all customers.\") equals none of the figures \
             the text cites; use a cited figure exactly as displayed (the closest is segment.3.share = 41.2%), \
             cite the key it comes from, or remove the number."
        );
        let none = check_numbers("7 days", &[]);
        assert!(none[0].to_string().ends_with("or remove the number."));
    }

    fn store_catalogue() -> FigureCatalogue {
        let mut c = FigureCatalogue::new();
        for f in [
            fig("base.monetary.median", 500.0, Unit::Number),
            fig("base.frequency.median", 4.0, Unit::Number),
            fig("base.recency_days.median", 40.0, Unit::Number),
            fig("base.buyer_share", 0.6, Unit::Share),
            // Segment 1: lapsed big spenders.
            fig("segment.1.monetary.median", 2400.0, Unit::Number),
            fig("segment.1.frequency.median", 9.0, Unit::Number),
            fig("segment.1.recency_days.median", 200.0, Unit::Number),
            fig("segment.1.buyer_share", 1.0, Unit::Share),
            // Segment 2: active low spenders.
            fig("segment.2.monetary.median", 45.0, Unit::Number),
            fig("segment.2.frequency.median", 1.0, Unit::Number),
            fig("segment.2.recency_days.median", 10.0, Unit::Number),
            fig("segment.2.buyer_share", 0.1, Unit::Share),
        ] {
            c.insert(f);
        }
        c
    }

    #[test]
    fn names_supported_by_the_kpis_pass() {
        let c = store_catalogue();
        let names = [
            (1, "Lapsed big spenders — appliances/kitchen"),
            (2, "New one-time buyers, browsers who rarely buy"),
        ];
        assert_eq!(check_names(&names, &c), []);
        assert_eq!(
            check_names(&[(1, "Loyal VIPs at risk of churning")], &c),
            []
        );
    }

    #[test]
    fn names_the_kpis_contradict_are_rejected() {
        let c = store_catalogue();
        let v = check_names(&[(2, "VIP shoppers")], &c);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].to_string(),
            "Segment 2: the name \"VIP shoppers\" says \"vip\", which needs spend (monetary) above the base's, \
             but segment.2.monetary.median = 45 against base.monetary.median = 500; choose words the figures support."
        );
        let terms = |name: &str, id: usize| -> Vec<String> {
            check_names(&[(id, name)], &c)
                .into_iter()
                .filter_map(|v| match v {
                    Violation::ContradictedClaim { term, .. } => Some(term),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(terms("Premium loyalists", 2), ["premium", "loyalists"]);
        assert_eq!(terms("Dormant high-value", 2), ["high value", "dormant"]);
        assert_eq!(terms("Recent bargain hunters", 1), ["bargain", "recent"]);
        assert_eq!(terms("Champions", 2), ["champions"]);
        assert_eq!(terms("Champions", 1), ["champions"]);
        assert_eq!(terms("Window-shoppers", 1), ["window shoppers"]);
        assert_eq!(terms("One-off buyers", 1), ["one off"]);
        // Whole words only: "inactive" is not "active", "newsletter" is not "new".
        assert_eq!(terms("Newsletter readers", 1), Vec::<String>::new());
        assert_eq!(terms("Inactive", 2), ["inactive"]);
    }

    #[test]
    fn claims_about_unmeasured_kpis_are_unsupported() {
        let mut c = FigureCatalogue::new();
        c.insert(fig(
            "segment.1.feature.petal_length.mean",
            1.46,
            Unit::Number,
        ));
        let v = check_names(&[(1, "VIP irises")], &c);
        assert_eq!(
            v,
            [Violation::UnsupportedClaim {
                segment: 1,
                name: "VIP irises".into(),
                term: "vip".into(),
                measure: "spend (monetary)".into(),
            }]
        );
        // A feature table with a monetary column is judged on its means.
        c.insert(fig("segment.1.feature.monetary.mean", 900.0, Unit::Number));
        c.insert(fig("base.feature.monetary.mean", 300.0, Unit::Number));
        assert_eq!(check_names(&[(1, "VIP irises")], &c), []);
    }

    #[test]
    fn names_must_be_unique_and_non_empty() {
        let c = FigureCatalogue::new();
        let v = check_names(
            &[
                (1, "Tall flowers"),
                (2, " "),
                (3, "tall  Flowers"),
                (4, "Short"),
            ],
            &c,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], Violation::EmptyName { segment: 2 });
        assert_eq!(
            v[0].to_string(),
            "Segments 1 and 3 share the name \"Tall flowers\"; every segment needs its own name that says what sets it apart."
        );
    }
}
