//! A customer's browsing history in the form every embedder reads.
//!
//! The features layer builds one [`BrowsingDocument`] per customer from the event stream;
//! the local embedder reads its weighted terms, a language-model embedder reads
//! [`BrowsingDocument::text`]. Keeping both views on one type means the two embedders always
//! see the same history.

use serde::{Deserialize, Serialize};

/// What a term names; part of the term's identity, so `brand:apple` and a category called
/// `apple` never merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TermKind {
    /// A category path or one of its prefixes (`electronics`, `electronics.smartphone`).
    Category,
    /// A brand.
    Brand,
    /// An event type (`view`, `cart`, `purchase`, ...).
    Event,
}

impl TermKind {
    /// The word used in the text rendering and in term keys.
    pub fn key(self) -> &'static str {
        match self {
            TermKind::Category => "category",
            TermKind::Brand => "brand",
            TermKind::Event => "event",
        }
    }
}

/// One term of a history with its recency-weighted count (each event adds a weight that
/// halves every configured half-life before the end of the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedTerm {
    /// What the term names.
    pub kind: TermKind,
    /// The value, normalised (lower case, trimmed).
    pub value: String,
    /// Recency-weighted count, > 0.
    pub weight: f64,
}

/// A customer's browsing history: weighted terms, sorted by (kind, value), no duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrowsingDocument {
    terms: Vec<WeightedTerm>,
}

/// Terms shown in the text rendering; a history's long tail adds noise, not meaning.
const TEXT_TERMS: usize = 48;

impl BrowsingDocument {
    /// Builds a document from terms in any order; duplicate (kind, value) pairs are summed,
    /// and terms with a weight that is not finite and positive are left out.
    pub fn new(terms: impl IntoIterator<Item = WeightedTerm>) -> Self {
        let mut terms: Vec<WeightedTerm> = terms
            .into_iter()
            .filter(|t| t.weight.is_finite() && t.weight > 0.0)
            .collect();
        terms.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
        let mut merged: Vec<WeightedTerm> = Vec::with_capacity(terms.len());
        for term in terms {
            match merged.last_mut() {
                Some(last) if last.kind == term.kind && last.value == term.value => {
                    last.weight += term.weight;
                }
                _ => merged.push(term),
            }
        }
        BrowsingDocument { terms: merged }
    }

    /// The terms, sorted by (kind, value).
    pub fn terms(&self) -> &[WeightedTerm] {
        &self.terms
    }

    /// True for a customer with no browsing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The history as short prose for embedding models that read text: the strongest terms
    /// first, each with its weight rounded to one decimal, so equal histories give equal
    /// text (the embedding cache is keyed by it).
    pub fn text(&self) -> String {
        if self.terms.is_empty() {
            return "no browsing history".to_string();
        }
        let mut order: Vec<&WeightedTerm> = self.terms.iter().collect();
        order.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| (a.kind, &a.value).cmp(&(b.kind, &b.value)))
        });
        let parts: Vec<String> = order
            .iter()
            .take(TEXT_TERMS)
            .map(|t| format!("{} {} ({:.1})", t.kind.key(), t.value, t.weight))
            .collect();
        format!("browsing history, strongest first: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(kind: TermKind, value: &str, weight: f64) -> WeightedTerm {
        WeightedTerm {
            kind,
            value: value.into(),
            weight,
        }
    }

    #[test]
    fn terms_are_sorted_merged_and_cleaned() {
        let doc = BrowsingDocument::new([
            term(TermKind::Brand, "apple", 1.0),
            term(TermKind::Category, "apple", 2.0),
            term(TermKind::Brand, "apple", 0.5),
            term(TermKind::Event, "view", f64::NAN),
            term(TermKind::Event, "cart", 0.0),
        ]);
        assert_eq!(
            doc.terms(),
            &[
                term(TermKind::Category, "apple", 2.0),
                term(TermKind::Brand, "apple", 1.5),
            ]
        );
    }

    #[test]
    fn text_lists_strongest_terms_first() {
        let doc = BrowsingDocument::new([
            term(TermKind::Event, "view", 1.25),
            term(TermKind::Category, "electronics", 3.0),
        ]);
        assert_eq!(
            doc.text(),
            "browsing history, strongest first: category electronics (3.0); event view (1.2)"
        );
        assert_eq!(BrowsingDocument::default().text(), "no browsing history");
    }
}
