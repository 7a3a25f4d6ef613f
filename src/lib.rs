//! segscope: see, trust and talk about customer segments.
//!
//! The crate is layered so that dependencies point one way:
//!
//! - transports: [`cli`] (the `segscope` binary) turns arguments into validated commands;
//!   [`serve`] (`segscope serve`) answers HTTP: health, metrics and the runs API;
//! - use cases: [`pipeline`] runs ingest → features → embed → store → cluster → map →
//!   measure → narrate → report, for feature tables and for store data; [`demo`] runs it on
//!   a synthetic store with planted segments; [`ask`] answers plain-language questions about
//!   a finished run (a chat model calling read-only tools, or the built-in answerer), every
//!   number checked against the figures the tools returned;
//!   [`track`] runs store data week by week: stable segments, movement, drift and alerts;
//! - capabilities: [`ingest`] (files to validated tables and per-customer records),
//!   [`features`] (scaling, RFM, browsing behaviour), [`embedding`] (browsing histories to
//!   vectors: local or an OpenAI-compatible API), [`store`] (Qdrant: embedded or server),
//!   [`analysis`] (CPU-only maths on ndarray: clustering, maps, validity, KPIs),
//!   [`llm`] (chat models: OpenAI-compatible or none), [`narrative`] (names, descriptions
//!   and caveats written from the numbers, or by a model and checked against them), [`report`]
//!   (the files a run writes: `segments.json`, `assignments.csv`, `report.html`);
//! - [`domain`]: plain data with invariants, no I/O.
//!
//! Nothing in [`domain`] or [`analysis`] does I/O or touches an async runtime; every random
//! choice draws from an RNG seeded by the run's settings, and every parallel reduction is
//! ordered so that results do not depend on the number of threads. async-openai appears only
//! in [`openai_compat`] and its two clients
//! ([`embedding::openai`], [`llm::openai`]), the qdrant crates only in [`store`].

pub mod analysis;
pub mod ask;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod embedding;
pub mod features;
pub mod ingest;
pub mod llm;
pub mod narrative;
pub mod openai_compat;
pub mod pipeline;
pub mod report;
pub mod serve;
pub mod settings;
pub mod store;
pub mod track;
