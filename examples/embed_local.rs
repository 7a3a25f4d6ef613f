//! Times the local embedder: fit + embed of 100,000 synthetic histories of ~30 terms over a
//! 2,000-term vocabulary (Zipf-like term popularity, a few planted topics).
//!
//! `cargo run --example embed_local [-- N]` (debug profile: the crate is built at opt-level 1,
//! dependencies at 3; a release build is faster).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use segscope::analysis::progress::NoProgress;
use segscope::domain::{BrowsingDocument, TermKind, WeightedTerm};
use segscope::embedding::{LocalEmbedder, LocalParams};

const VOCABULARY: usize = 2000;
const TOPICS: usize = 8;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let t = Instant::now();
    let docs: Vec<BrowsingDocument> = (0..n)
        .map(|_| {
            let topic = rng.gen_range(0..TOPICS);
            let terms = (0..30).map(|_| {
                // Half the terms from the customer's topic block, half Zipf-ish from all.
                let id = if rng.r#gen::<bool>() {
                    topic * (VOCABULARY / TOPICS) + rng.gen_range(0..VOCABULARY / TOPICS)
                } else {
                    let u: f64 = rng.r#gen();
                    ((VOCABULARY as f64).powf(u) as usize).min(VOCABULARY - 1)
                };
                let kind = match id % 3 {
                    0 => TermKind::Category,
                    1 => TermKind::Brand,
                    _ => TermKind::Event,
                };
                WeightedTerm {
                    kind,
                    value: format!("t{id}"),
                    weight: rng.gen_range(0.05..5.0),
                }
            });
            BrowsingDocument::new(terms)
        })
        .collect();
    let terms: usize = docs.iter().map(|d| d.terms().len()).sum();
    println!(
        "{n} documents, {:.1} distinct terms each on average, generated in {:.2} s",
        terms as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let model = match LocalEmbedder::fit(&docs, &LocalParams::default(), 42) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fit failed: {e}");
            std::process::exit(1);
        }
    };
    let fit = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let vectors = model.embed_blocking(&docs, &NoProgress);
    let embed = t.elapsed().as_secs_f64();
    println!(
        "vocabulary {}, dimensions {}, threads {}: fit {fit:.2} s, embed {embed:.2} s, total {:.2} s",
        model.vocabulary_len(),
        vectors.ncols(),
        rayon::current_num_threads(),
        fit + embed
    );
    let sv = model.singular_values();
    println!(
        "top singular values: {:?}",
        &sv[..sv.len().min(8)]
            .iter()
            .map(|v| (v * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
}
