//! `assignments.csv`: one row per customer with its segment and map coordinates.
//!
//! Columns: `id,segment` then `reason` (only for HDBSCAN runs, where customers can be left
//! out; it says why the segment is empty), then `x,y` pairs for each map drawn in the order
//! pca, umap, tsne. Segment ids start at 1 as in `segments.json`. Coordinates are written in
//! Rust's shortest round-trip form, so the file is byte-identical for identical results.

use ndarray::Array2;

use super::ReportError;
use crate::domain::{MapMethod, Partition};

/// Renders the CSV text.
pub fn render_assignments(
    ids: &[String],
    partition: &Partition,
    maps: &[(MapMethod, &Array2<f64>)],
    with_reason: bool,
) -> Result<Vec<u8>, ReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string(), "segment".to_string()];
    if with_reason {
        header.push("reason".into());
    }
    for (method, _) in maps {
        header.push(format!("{}_x", method.key()));
        header.push(format!("{}_y", method.key()));
    }
    let err = |e: csv::Error| ReportError::Serialize {
        what: "assignments.csv",
        message: e.to_string(),
    };
    writer.write_record(&header).map_err(err)?;
    for (i, id) in ids.iter().enumerate() {
        let label = partition.labels()[i];
        let mut row = vec![
            id.clone(),
            label.map(|s| (s + 1).to_string()).unwrap_or_default(),
        ];
        if with_reason {
            row.push(if label.is_none() {
                "noise: in no dense group (HDBSCAN)".into()
            } else {
                String::new()
            });
        }
        for (_, coords) in maps {
            row.push(coords[[i, 0]].to_string());
            row.push(coords[[i, 1]].to_string());
        }
        writer.write_record(&row).map_err(err)?;
    }
    writer.into_inner().map_err(|e| ReportError::Serialize {
        what: "assignments.csv",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn columns_and_rows() {
        let p = Partition::from_raw([Some(0), None, Some(0)]);
        let pca = array![[0.5, -1.0], [2.0, 3.25], [0.1, 0.2]];
        let ids = vec!["a".to_string(), "b,c".to_string(), "d".to_string()];
        let text = String::from_utf8(
            render_assignments(&ids, &p, &[(MapMethod::Pca, &pca)], true).expect("csv"),
        )
        .expect("utf8");
        assert_eq!(
            text,
            "id,segment,reason,pca_x,pca_y\na,1,,0.5,-1\n\"b,c\",,noise: in no dense group (HDBSCAN),2,3.25\nd,1,,0.1,0.2\n"
        );
    }
}
