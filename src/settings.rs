//! Typed settings, loaded in layers: the compiled-in `config/default.toml`, then an optional
//! `--config` file, then `SEGSCOPE__SECTION__KEY` environment variables; command-line flags
//! are applied last by [`crate::cli`]. Unknown keys are rejected so a typo never silently
//! falls back to a default. The effective settings are recorded in every run's output.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::analysis::clustering::{GmmParams, HdbscanParams, KmeansParams, StabilityParams};
use crate::domain::{MapMethod, Method, Scaling};
use crate::narrative::CaveatThresholds;

/// The defaults, compiled in so the binary works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// All of segscope's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Seed and threads.
    pub run: RunSettings,
    /// How input files are read.
    pub input: InputSettings,
    /// Method, k, scaling and maps.
    pub segment: SegmentSettings,
    /// When and how large runs fit on a sample.
    pub sampling: SamplingSettings,
    /// k-means.
    pub kmeans: KmeansParams,
    /// Gaussian mixtures.
    pub gmm: GmmParams,
    /// HDBSCAN.
    pub hdbscan: HdbscanParams,
    /// Stability under resampling.
    pub stability: StabilityParams,
    /// UMAP.
    pub umap: UmapSettings,
    /// t-SNE.
    pub tsne: TsneSettings,
    /// Validity measures.
    pub validity: ValiditySettings,
    /// How store data becomes the clustering space.
    pub customer_matrix: CustomerMatrixSettings,
    /// Thresholds that turn numbers into caveats.
    pub caveats: CaveatThresholds,
    /// How browsing histories become vectors (local or an OpenAI-compatible endpoint).
    pub embedding: crate::embedding::EmbeddingSettings,
    /// How transaction files (UCI Online Retail II layout) are read.
    pub transactions: crate::ingest::store::TransactionSettings,
    /// How browsing-event files (REES46 layout) are read and recency-weighted.
    pub events: crate::ingest::store::EventSettings,
    /// Where customer vectors and payloads are stored (embedded Qdrant or a server).
    pub store: crate::store::StoreSettings,
    /// Which chat model writes text (built-in by default, or an OpenAI-compatible endpoint).
    pub llm: crate::llm::LlmSettings,
    /// What the narrator describes and how it is checked.
    pub narrative: NarrativeSettings,
    /// How `ask` answers questions.
    pub ask: AskSettings,
    /// Auth and limits of `segscope serve`.
    pub serve: crate::serve::ServeSettings,
    /// The Slack app of `segscope serve`: secrets, where answers go, retries.
    pub slack: crate::serve::slack::SlackSettings,
    /// Weekly tracking (`segscope track`): windows, fit weeks and alert thresholds.
    pub track: crate::track::TrackSettings,
}

/// `[narrative]`: what the narrator describes and how model text is checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NarrativeSettings {
    /// Segments with fewer customers are not described individually (named by their
    /// figures only), so a handful of people are never profiled in prose.
    pub min_segment_size: usize,
    /// Times a model text that fails the grounding check is regenerated (with the
    /// violations listed) before the built-in text replaces it.
    pub regenerations: u32,
}

/// `[ask]`: how questions are answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AskSettings {
    /// Most rounds of tool calls before the agent must answer.
    pub max_tool_rounds: usize,
    /// Most customers a similarity look-up returns.
    pub similar_customers: usize,
}

/// Seed and threads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Seed of every random choice.
    pub seed: u64,
    /// Worker threads; 0 = one per core. Not serialised: results do not depend on it, and
    /// `segments.json` must be byte-identical across thread counts (`run.json` records the
    /// count actually used).
    #[serde(skip_serializing)]
    pub threads: usize,
}

/// How input files are read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// Field delimiter, one ASCII character.
    pub delimiter: String,
}

/// Number of segments as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KSetting {
    /// Choose k automatically.
    #[serde(serialize_with = "serialize_auto")]
    Auto,
    /// Exactly k segments.
    Fixed(usize),
}

fn serialize_auto<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("auto")
}

impl std::str::FromStr for KSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(KSetting::Auto);
        }
        match t.parse::<usize>() {
            Ok(k) if k >= 1 => Ok(KSetting::Fixed(k)),
            _ => Err(format!(
                "'{s}' is not a number of segments: use \"auto\" or a whole number of at least 1"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for KSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(k) if k >= 1 => Ok(KSetting::Fixed(k as usize)),
            Raw::Number(k) => Err(serde::de::Error::custom(format!(
                "k = {k}: use \"auto\" or at least 1"
            ))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Method, k, scaling and maps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentSettings {
    /// Clustering method.
    pub method: Method,
    /// Number of segments.
    pub k: KSetting,
    /// Smallest k tried by `auto`.
    pub k_min: usize,
    /// Largest k tried by `auto`.
    pub k_max: usize,
    /// Feature scaling.
    pub scale: Scaling,
    /// Maps to draw.
    pub maps: Vec<MapMethod>,
}

/// When and how large runs fit on a sample (documented in `config/default.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingSettings {
    /// Above this many customers, fit on a sample.
    pub fit_above: usize,
    /// Size of that sample.
    pub fit_sample: usize,
}

/// UMAP settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UmapSettings {
    /// Neighbours of each point in the fuzzy graph.
    pub n_neighbors: usize,
    /// Minimum distance between embedded points.
    pub min_dist: f64,
    /// Scale of embedded distances.
    pub spread: f64,
    /// Epochs; 0 = automatic.
    pub n_epochs: usize,
}

impl UmapSettings {
    /// The layout parameters for `n_rows` points: `n_neighbors` counts the point itself, as
    /// in umap-learn, and is capped by the rows (at least 2). Not yet validated.
    pub fn params(&self, n_rows: usize) -> crate::analysis::maps::umap::UmapParams {
        crate::analysis::maps::umap::UmapParams {
            n_neighbors: self.n_neighbors.min(n_rows).max(2),
            min_dist: self.min_dist,
            spread: self.spread,
            n_epochs: (self.n_epochs > 0).then_some(self.n_epochs),
            ..crate::analysis::maps::umap::UmapParams::default()
        }
    }
}

/// t-SNE settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TsneSettings {
    /// Effective number of neighbours.
    pub perplexity: f64,
    /// Barnes-Hut accuracy.
    pub theta: f64,
    /// Iterations.
    pub max_iter: usize,
}

impl TsneSettings {
    /// The fitting parameters these settings name.
    pub fn params(&self) -> crate::analysis::maps::tsne::TsneParams {
        crate::analysis::maps::tsne::TsneParams {
            perplexity: self.perplexity,
            theta: self.theta,
            max_iter: self.max_iter,
            ..crate::analysis::maps::tsne::TsneParams::default()
        }
    }
}

/// Validity measures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValiditySettings {
    /// Neighbours for trustworthiness.
    pub trustworthiness_neighbors: usize,
}

/// How store data becomes the clustering space: each block of columns is scaled so that its
/// total variance equals its weight (see `pipeline::store_segment`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomerMatrixSettings {
    /// Weight of recency, frequency and monetary value.
    pub rfm_weight: f64,
    /// Weight of browsing behaviour (views, sessions, conversion).
    pub behaviour_weight: f64,
    /// Weight of the browsing-history embedding.
    pub browsing_weight: f64,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file, variable or value is wrong; the message names it.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` if given, then `SEGSCOPE__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(SettingsError::Invalid(format!(
                    "{}: no such file",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let plain = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let slack_env = (
            plain(crate::serve::slack::settings::SIGNING_SECRET_ENV),
            plain(crate::serve::slack::settings::BOT_TOKEN_ENV),
        );
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SEGSCOPE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SEGSCOPE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("segment.maps")
                .with_list_parse_key("track.maps")
                .source(Some(env)),
        );
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        // Slack's own variable names work as users expect (an explicit setting wins).
        settings.slack.fill_from_env(|name| {
            if name == crate::serve::slack::settings::SIGNING_SECRET_ENV {
                slack_env.0.clone()
            } else if name == crate::serve::slack::settings::BOT_TOKEN_ENV {
                slack_env.1.clone()
            } else {
                None
            }
        });
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and combinations once, so nothing deeper re-checks them.
    #[allow(
        clippy::neg_cmp_op_on_partial_ord,
        reason = "`!(v >= 0.0)` also rejects NaN"
    )]
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Invalid(m));
        if let Err(e) = self.embedding.validate() {
            return bad(e.to_string());
        }
        if let Err(e) = self.llm.validate() {
            return bad(e.to_string());
        }
        if let Err(e) = self.track.validate() {
            return bad(e);
        }
        let positive = |secs: f64| secs > 0.0 && secs.is_finite();
        if self.serve.max_body_bytes == 0
            || self.serve.max_upload_bytes == 0
            || !positive(self.serve.request_timeout_secs)
            || !positive(self.serve.upload_timeout_secs)
        {
            return bad(
                "serve.max_body_bytes, serve.max_upload_bytes, serve.request_timeout_secs and \
                 serve.upload_timeout_secs must be above 0"
                    .into(),
            );
        }
        if let Err(message) = self.serve.watch.validate() {
            return bad(message);
        }
        if let Err(message) = self.slack.validate() {
            return bad(message);
        }
        if self.ask.max_tool_rounds == 0 || self.ask.similar_customers == 0 {
            return bad("ask.max_tool_rounds and ask.similar_customers must be at least 1".into());
        }
        let weights = &self.customer_matrix;
        for (key, w) in [
            ("rfm_weight", weights.rfm_weight),
            ("behaviour_weight", weights.behaviour_weight),
            ("browsing_weight", weights.browsing_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!(
                    "customer_matrix.{key} = {w}: must be a finite number of at least 0"
                ));
            }
        }
        if weights.rfm_weight + weights.behaviour_weight + weights.browsing_weight <= 0.0 {
            return bad("customer_matrix: at least one weight must be above 0".into());
        }
        if self.input.delimiter.len() != 1 || !self.input.delimiter.is_ascii() {
            return bad(format!(
                "input.delimiter = {:?}: must be exactly one ASCII character",
                self.input.delimiter
            ));
        }
        if self.segment.k_min < 2 || self.segment.k_max < self.segment.k_min {
            return bad(format!(
                "segment.k_min = {}, segment.k_max = {}: need 2 <= k_min <= k_max",
                self.segment.k_min, self.segment.k_max
            ));
        }
        if self.sampling.fit_sample < 100 || self.sampling.fit_sample > self.sampling.fit_above {
            return bad(format!(
                "sampling.fit_sample = {}, sampling.fit_above = {}: need 100 <= fit_sample <= fit_above",
                self.sampling.fit_sample, self.sampling.fit_above
            ));
        }
        if self.segment.maps.is_empty() {
            return bad("segment.maps is empty: name at least one of pca, umap, tsne".into());
        }
        if self.kmeans.n_init == 0 || self.kmeans.max_iter == 0 {
            return bad("kmeans.n_init and kmeans.max_iter must be at least 1".into());
        }
        if self.hdbscan.min_cluster_size == 1 {
            return bad(
                "hdbscan.min_cluster_size = 1: every customer would be a segment; use 0 (automatic) or at least 2"
                    .into(),
            );
        }
        if self.gmm.n_init == 0 || self.gmm.max_iter == 0 || !(self.gmm.reg_covariance >= 0.0) {
            return bad(
                "gmm.n_init and gmm.max_iter must be at least 1 and gmm.reg_covariance >= 0".into(),
            );
        }
        if self.umap.n_neighbors < 2 || !(self.umap.min_dist >= 0.0) || !(self.umap.spread > 0.0) {
            return bad("umap: need n_neighbors >= 2, min_dist >= 0, spread > 0".into());
        }
        if !(self.tsne.perplexity >= 1.0)
            || !(0.0..=1.0).contains(&self.tsne.theta)
            || self.tsne.max_iter < 250
        {
            return bad("tsne: need perplexity >= 1, 0 <= theta <= 1, max_iter >= 250".into());
        }
        if self.validity.trustworthiness_neighbors == 0 {
            return bad("validity.trustworthiness_neighbors must be at least 1".into());
        }
        Ok(())
    }

    /// The delimiter as a byte (validated to be one ASCII character).
    pub fn delimiter_byte(&self) -> u8 {
        self.input
            .delimiter
            .as_bytes()
            .first()
            .copied()
            .unwrap_or(b',')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults");
        assert_eq!(s.run.seed, 42);
        assert_eq!(s.segment.k, KSetting::Auto);
        assert_eq!(
            s.segment.maps,
            vec![MapMethod::Pca, MapMethod::Umap, MapMethod::Tsne]
        );
        assert_eq!(s.kmeans, KmeansParams::default());
        assert_eq!(s.gmm, GmmParams::default());
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[run]\nseed = 7\n[segment]\nk = 4\nmethod = \"gmm\"\n",
        )
        .expect("write");
        let s = Settings::load_with_env(
            Some(&file),
            env(&[
                ("SEGSCOPE__RUN__SEED", "9"),
                ("SEGSCOPE__SEGMENT__MAPS", "pca,tsne"),
                ("OTHER", "x"),
            ]),
        )
        .expect("load");
        assert_eq!(s.run.seed, 9);
        assert_eq!(s.segment.k, KSetting::Fixed(4));
        assert_eq!(s.segment.method, Method::Gmm);
        assert_eq!(s.segment.maps, vec![MapMethod::Pca, MapMethod::Tsne]);
    }

    #[test]
    fn k_from_environment_text() {
        let s = Settings::load_with_env(None, env(&[("SEGSCOPE__SEGMENT__K", "5")])).expect("load");
        assert_eq!(s.segment.k, KSetting::Fixed(5));
    }

    #[test]
    fn slack_secrets_fall_back_to_slacks_variables_and_never_serialise() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SLACK_SIGNING_SECRET", "sign-env"),
                ("SLACK_BOT_TOKEN", "xoxb-env"),
            ]),
        )
        .expect("load");
        assert_eq!(s.slack.signing_secret.expose(), "sign-env");
        assert_eq!(s.slack.bot_token.expose(), "xoxb-env");
        assert_eq!(s.slack.api_base_url, "https://slack.com/api");
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SLACK_SIGNING_SECRET", "sign-env"),
                ("SEGSCOPE__SLACK__SIGNING_SECRET", "sign-explicit"),
            ]),
        )
        .expect("load");
        assert_eq!(s.slack.signing_secret.expose(), "sign-explicit");
        assert!(s.slack.bot_token.is_empty());
        let text = format!("{s:?} {}", serde_json::to_string(&s).expect("json"));
        assert!(!text.contains("sign-explicit"), "{text}");
        let e = Settings::load_with_env(None, env(&[("SEGSCOPE__SLACK__RUN", "../x")]))
            .expect_err("bad run");
        assert!(e.to_string().contains("slack.run"), "{e}");
    }

    #[test]
    fn the_serve_watch_and_track_maps_come_from_the_environment_and_are_checked() {
        let s = Settings::load(None).expect("defaults");
        assert!(!s.serve.watch.enabled, "the watch is off by default");
        assert_eq!(
            s.serve.watch.folder_in(Path::new("data")),
            Path::new("data/watch")
        );
        assert_eq!(s.track.maps, vec![MapMethod::Pca]);
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SEGSCOPE__SERVE__WATCH__ENABLED", "true"),
                ("SEGSCOPE__SERVE__WATCH__FOLDER", "/srv/weekly"),
                ("SEGSCOPE__SERVE__WATCH__RUN_ID", "shop"),
                ("SEGSCOPE__SERVE__WATCH__POLL_SECS", "5"),
                ("SEGSCOPE__TRACK__MAPS", "pca,umap,tsne"),
            ]),
        )
        .expect("load");
        assert!(s.serve.watch.enabled);
        assert_eq!(s.serve.watch.run_id, "shop");
        assert_eq!(s.serve.watch.poll_secs, 5.0);
        assert_eq!(
            s.serve.watch.folder_in(Path::new("data")),
            Path::new("/srv/weekly")
        );
        assert_eq!(
            s.track.maps,
            vec![MapMethod::Pca, MapMethod::Umap, MapMethod::Tsne]
        );
        for (key, value, named) in [
            (
                "SEGSCOPE__SERVE__WATCH__POLL_SECS",
                "0",
                "serve.watch.poll_secs",
            ),
            (
                "SEGSCOPE__SERVE__WATCH__RUN_ID",
                "../runs",
                "serve.watch.run_id",
            ),
            ("SEGSCOPE__SERVE__WATCH__EVERY", "5", "every"),
        ] {
            let e = Settings::load_with_env(None, env(&[(key, value)])).expect_err(key);
            assert!(e.to_string().contains(named), "{key}: {e}");
        }
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[kmeans]\nn_inits = 3\n").expect("write");
        let e = Settings::load_with_env(Some(&file), env(&[])).expect_err("typo");
        assert!(e.to_string().contains("n_inits"), "{e}");
        let e = Settings::load_with_env(None, env(&[("SEGSCOPE__SEGMENT__K", "many")]))
            .expect_err("bad k");
        assert!(e.to_string().contains("many"), "{e}");
        let e = Settings::load_with_env(None, env(&[("SEGSCOPE__SEGMENT__K_MIN", "1")]))
            .expect_err("k_min");
        assert!(e.to_string().contains("k_min"), "{e}");
        let e = Settings::load(Some(Path::new("/nonexistent/segscope.toml"))).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/segscope.toml"), "{e}");
    }
}
