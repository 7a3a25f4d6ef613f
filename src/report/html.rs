//! `report.html`: the briefing, rendered with tera from `templates/report.html.tera`.
//!
//! The page is self-contained: styles and the small scatter-plot script are inline and the
//! map points are embedded as JSON, so it opens offline and can be mailed as one file. The
//! template is compiled into the binary, so the report never depends on the working
//! directory. Everything customer-provided (ids, labels, column names) reaches the page
//! through tera's HTML escaping or as JSON with `<` escaped, never as markup.

use ndarray::Array2;
use serde::Serialize;

use super::ReportError;
use super::document::SegmentsDocument;
use crate::domain::{MapMethod, Partition};
use crate::narrative::reading;

const TEMPLATE: &str = include_str!("../../templates/report.html.tera");

/// Most points drawn per map: beyond this a canvas scatter stops being readable and the
/// file stops being mailable, so a seeded random subset is drawn and the page says so.
pub const MAX_PLOTTED: usize = 50_000;

/// Points of one map, as the page's script reads them.
#[derive(Serialize)]
struct MapPoints<'a> {
    key: &'a str,
    title: &'a str,
    x: Vec<f32>,
    y: Vec<f32>,
}

/// Everything the page's script needs.
#[derive(Serialize)]
struct PlotData<'a> {
    ids: Vec<&'a str>,
    /// Segment id from 1; 0 for noise.
    segment: Vec<usize>,
    segment_names: Vec<&'a str>,
    labels: Option<Vec<&'a str>>,
    maps: Vec<MapPoints<'a>>,
}

/// Plain-language readings shown beside the numbers.
#[derive(Serialize)]
struct Readings {
    silhouette: Option<String>,
    davies_bouldin: Option<String>,
    calinski_harabasz: Option<String>,
    stability: Option<String>,
    maps: Vec<String>,
    separation: Vec<String>,
}

/// Renders the briefing. `plotted` lists the customers drawn in the maps (all of them,
/// or a seeded subset of at most [`MAX_PLOTTED`]).
pub fn render_report(
    doc: &SegmentsDocument,
    ids: &[String],
    labels: Option<&[String]>,
    partition: &Partition,
    maps: &[(MapMethod, &Array2<f64>)],
    plotted: &[usize],
) -> Result<String, ReportError> {
    let data = PlotData {
        ids: plotted.iter().map(|&i| ids[i].as_str()).collect(),
        segment: plotted
            .iter()
            .map(|&i| partition.labels()[i].map(|s| s + 1).unwrap_or(0))
            .collect(),
        segment_names: doc.segments.iter().map(|s| s.name.as_str()).collect(),
        labels: labels.map(|labels| plotted.iter().map(|&i| labels[i].as_str()).collect()),
        maps: maps
            .iter()
            .map(|(m, coords)| MapPoints {
                key: m.key(),
                title: m.display_name(),
                x: plotted.iter().map(|&i| coords[[i, 0]] as f32).collect(),
                y: plotted.iter().map(|&i| coords[[i, 1]] as f32).collect(),
            })
            .collect(),
    };
    let json = serde_json::to_string(&data)
        .map_err(|e| ReportError::Serialize {
            what: "report data",
            message: e.to_string(),
        })?
        .replace('<', "\\u003c");
    let q = &doc.quality;
    let readings = Readings {
        silhouette: q.silhouette.map(reading::silhouette),
        davies_bouldin: q.davies_bouldin.map(reading::davies_bouldin),
        calinski_harabasz: q.calinski_harabasz.map(reading::calinski_harabasz),
        stability: q
            .stability
            .as_ref()
            .map(|s| reading::stability(s.mean_ari, s.resamples)),
        maps: maps
            .iter()
            .filter_map(|(m, _)| {
                doc.maps.get(m.key()).map(|s| {
                    reading::trustworthiness(
                        m.display_name(),
                        s.trustworthiness,
                        s.trustworthiness_neighbors,
                    )
                })
            })
            .collect(),
        separation: maps
            .iter()
            .filter_map(|(m, _)| {
                doc.maps
                    .get(m.key())
                    .and_then(|s| s.label_separation.clone())
            })
            .collect(),
    };
    let mut context = tera::Context::new();
    context.insert("doc", doc);
    context.insert("readings", &readings);
    context.insert("plot_json", &json);
    context.insert("has_labels", &labels.is_some());
    context.insert("plotted", &plotted.len());
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec!["report.html"]);
    tera.add_raw_template("report.html", TEMPLATE)
        .map_err(|e| ReportError::Template(format!("{e:?}")))?;
    tera.render("report.html", &context)
        .map_err(|e| ReportError::Template(format!("{e:?}")))
}
