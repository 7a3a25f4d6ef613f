//! Customers like a description: free text → the run's own local embedder → nearest
//! customers in the vector store → aggregates.
//!
//! The local embedder knows only the `kind:value` terms it learned (categories and their
//! prefixes, brands, event types), so a description is mapped onto them word by word: a
//! word matches a term when it equals one of the term's parts (`smartphone` matches
//! `electronics.smartphone`), allowing a plural `s`. Words that match nothing are reported,
//! and when none match, the result says so and no search is made: a zero vector would
//! "find" arbitrary customers.
//!
//! What comes back is the group, never the people: how many were found, which segments
//! they are in, how similar they are on average, their purchase medians, and what they
//! browse, read from the group's mean embedding mapped back onto the vocabulary.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::tools::{FigureList, ToolError, Toolbox};
use crate::analysis::progress::NoProgress;
use crate::domain::{BrowsingDocument, TermKind, WeightedTerm};
use crate::embedding::LocalEmbedder;
use crate::narrative::figures::Unit;
use crate::pipeline::store_segment::{BROWSING_VECTOR, RFM_VECTOR};
use crate::store::{CollectionSpec, Distance, VectorSpec, VectorStore};

/// Terms reported as "what they browse".
const TOP_TERMS: usize = 8;

/// Words too common to say anything about browsing.
const STOPWORDS: [&str; 40] = [
    "the",
    "and",
    "for",
    "who",
    "that",
    "with",
    "from",
    "buy",
    "buys",
    "bought",
    "like",
    "likes",
    "customers",
    "customer",
    "people",
    "shoppers",
    "shop",
    "shops",
    "browse",
    "browses",
    "into",
    "are",
    "is",
    "of",
    "in",
    "on",
    "a",
    "an",
    "or",
    "to",
    "lots",
    "much",
    "many",
    "things",
    "stuff",
    "items",
    "products",
    "product",
    "mostly",
    "often",
];

/// A description mapped onto the vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Vocabulary terms the description names.
    pub terms: Vec<(TermKind, String)>,
    /// Words that name no term.
    pub unmatched: Vec<String>,
}

fn singular(word: &str) -> &str {
    word.strip_suffix('s')
        .filter(|w| w.len() >= 3)
        .unwrap_or(word)
}

/// Maps `description` onto the terms of `embedder`'s vocabulary.
pub fn match_description(embedder: &LocalEmbedder, description: &str) -> Matched {
    let lowered = description.to_lowercase();
    let mut words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2 && !STOPWORDS.contains(w))
        .collect();
    words.dedup();
    let vocabulary = embedder.vocabulary();
    let mut terms = Vec::new();
    let mut used = vec![false; words.len()];
    for (kind, value) in vocabulary {
        let mut hit = false;
        for part in value
            .split(['.', '_', '-', '/', ' '])
            .filter(|part| !part.is_empty())
        {
            for (i, w) in words.iter().enumerate() {
                if part == *w || singular(part) == singular(w) {
                    used[i] = true;
                    hit = true;
                }
            }
        }
        // Whole multi-word values ("living room") also match as a phrase.
        if hit || (value.contains(' ') && lowered.contains(value)) {
            terms.push((kind, value.to_string()));
        }
    }
    terms.sort();
    let unmatched = words
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(w, _)| (*w).to_string())
        .collect();
    Matched { terms, unmatched }
}

/// The `similar_customers` tool.
pub(crate) async fn similar_customers(
    toolbox: &Toolbox,
    description: &str,
    limit: usize,
    figures: &mut FigureList,
) -> Result<Value, ToolError> {
    let run = toolbox.run();
    let Some(store_run) = &run.document().store else {
        return Err(ToolError::Unavailable(
            "this run segmented a feature table: it has no browsing histories and no vector \
             store to search"
                .into(),
        ));
    };
    let Some(info) = &store_run.embedder else {
        return Err(ToolError::Unavailable(
            "nobody in this run browsed, so there are no browsing vectors to search".into(),
        ));
    };
    if info.provider != "local" {
        return Err(ToolError::Unavailable(format!(
            "this run embedded browsing with the {} embedder ({}); describing customers in free \
             text needs the local embedder",
            info.provider, info.model
        )));
    }
    let Some(embedder) = run.embedder() else {
        return Err(ToolError::Unavailable(
            "this run's directory has no local_embedder.json (it was written by an older \
             segscope); run `segscope segment` again to search customers by description"
                .into(),
        ));
    };
    let matched = match_description(embedder, description);
    let quoted_terms: Vec<String> = matched
        .terms
        .iter()
        .map(|(kind, value)| format!("{}:{value}", kind.key()))
        .collect();
    if matched.terms.is_empty() {
        return Ok(json!({
            "description": {"data": description},
            "matched_terms": [],
            "unmatched_words": {"data": matched.unmatched},
            "found": 0,
            "note": format!(
                "Nothing in the description matches the run's browsing vocabulary ({} category, \
                 brand and event terms), so no customers were searched. Describe customers by \
                 the categories or brands they browse.",
                embedder.vocabulary_len()
            ),
        }));
    }
    let doc = BrowsingDocument::new(matched.terms.iter().map(|(kind, value)| WeightedTerm {
        kind: *kind,
        value: value.clone(),
        weight: 1.0,
    }));
    let embedded = embedder.embed_blocking(std::slice::from_ref(&doc), &NoProgress);
    let query: Vec<f32> = embedded.row(0).to_vec();

    let spec = CollectionSpec {
        name: store_run.store.collection.clone(),
        vectors: vec![
            VectorSpec {
                name: BROWSING_VECTOR.into(),
                dimensions: info.dimensions,
                distance: Distance::Cosine,
            },
            VectorSpec {
                name: RFM_VECTOR.into(),
                dimensions: 3,
                distance: Distance::Euclid,
            },
        ],
    };
    let backend = match toolbox.store_access().settings.backend {
        crate::store::StoreBackend::Edge => "edge",
        crate::store::StoreBackend::Server => "server",
    };
    if backend != store_run.store.backend {
        return Err(ToolError::Unavailable(format!(
            "this run stored its customers in the {} store, but the settings name the {backend} \
             store; set store.backend = \"{}\"",
            store_run.store.backend, store_run.store.backend
        )));
    }
    let store = toolbox.store(&spec).await?;
    let neighbours = store.nearest(BROWSING_VECTOR, &query, limit, None).await?;
    let ids: Vec<String> = neighbours.iter().map(|n| n.customer_id.clone()).collect();
    let customers = store.retrieve(&ids, true).await?;

    let run_id = &store_run.store.run_id;
    let found = customers.len();
    let mut mix: BTreeMap<Option<u64>, usize> = BTreeMap::new();
    let mut centroid = vec![0.0f32; info.dimensions];
    let mut recency = Vec::new();
    let mut monetary = Vec::new();
    for c in &customers {
        let segment = c
            .payload
            .get("segments")
            .and_then(|s| s.get(run_id))
            .and_then(Value::as_u64);
        *mix.entry(segment).or_insert(0) += 1;
        if let Some(v) = c.vectors.get(BROWSING_VECTOR) {
            centroid.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        if let Some(rfm) = c.payload.get("rfm").filter(|r| !r.is_null()) {
            if let Some(r) = rfm.get("recency_days").and_then(Value::as_f64) {
                recency.push(r);
            }
            if let Some(m) = rfm.get("monetary").and_then(Value::as_f64) {
                monetary.push(m);
            }
        }
    }
    let segments: Vec<Value> = mix
        .iter()
        .map(|(segment, count)| {
            let (key, name) = match segment.and_then(|id| run.segment(id as usize)) {
                Some(s) => (format!("similar.segment.{}", s.id), s.name.clone()),
                None => ("similar.no_segment".to_string(), "in no segment".to_string()),
            };
            json!({
                "segment": segment,
                "name": name,
                "customers": figures.add(format!("{key}.customers"), *count as f64, Unit::Count),
                "share_of_found": figures.add(format!("{key}.share"), *count as f64 / found.max(1) as f64, Unit::Share),
            })
        })
        .collect();
    let mean_similarity = if neighbours.is_empty() {
        None
    } else {
        Some(neighbours.iter().map(|n| f64::from(n.score)).sum::<f64>() / neighbours.len() as f64)
    };
    let loadings = embedder.term_loadings(&centroid);
    let vocabulary = embedder.vocabulary();
    let mut ranked: Vec<(usize, f64)> = loadings
        .into_iter()
        .enumerate()
        .filter(|(_, l)| *l > 0.0)
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let browse: Vec<String> = ranked
        .iter()
        .take(TOP_TERMS)
        .filter_map(|(j, _)| vocabulary.get(*j))
        .map(|(kind, value)| format!("{}:{value}", kind.key()))
        .collect();
    Ok(json!({
        "description": {"data": description},
        "matched_terms": {"data": quoted_terms},
        "unmatched_words": {"data": matched.unmatched},
        "found": figures.add("similar.found", found as f64, Unit::Count),
        "mean_cosine_similarity": figures.maybe("similar.mean_similarity", mean_similarity, Unit::Number),
        "segments": segments,
        "buyers": figures.add("similar.buyers", recency.len() as f64, Unit::Count),
        "median_days_since_last_purchase": figures.maybe("similar.recency_days.median", median(recency), Unit::Number),
        "median_net_revenue": figures.maybe("similar.monetary.median", median(monetary), Unit::Number),
        "what_they_browse": {"data": browse},
        "note": "Aggregates over the customers found; individual customers are not disclosed.",
    }))
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::embedding::LocalParams;

    fn doc(terms: &[(TermKind, &str)]) -> BrowsingDocument {
        BrowsingDocument::new(terms.iter().map(|&(kind, value)| WeightedTerm {
            kind,
            value: value.into(),
            weight: 1.0,
        }))
    }

    #[test]
    fn descriptions_map_onto_vocabulary_terms_by_their_parts() {
        let corpus: Vec<BrowsingDocument> = (0..6)
            .map(|_| {
                doc(&[
                    (TermKind::Category, "electronics.smartphone"),
                    (TermKind::Category, "furniture.living room"),
                    (TermKind::Brand, "apple"),
                    (TermKind::Event, "view"),
                ])
            })
            .collect();
        let params = LocalParams {
            dimensions: 2,
            ..LocalParams::default()
        };
        let embedder = LocalEmbedder::fit(&corpus, &params, 1).expect("fit");
        let matched = match_description(
            &embedder,
            "Customers who buy Smartphones from Apple, and yachts",
        );
        assert_eq!(
            matched.terms,
            [
                (TermKind::Category, "electronics.smartphone".to_string()),
                (TermKind::Brand, "apple".to_string()),
            ]
        );
        assert_eq!(matched.unmatched, ["yachts"]);
        let matched = match_description(&embedder, "a new living room");
        assert_eq!(
            matched.terms,
            [(TermKind::Category, "furniture.living room".to_string())]
        );
        assert!(match_description(&embedder, "zzz qqq").terms.is_empty());
    }
}
