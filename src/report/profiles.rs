//! `profiles.csv`: one row per customer with the figures a person hovering
//! over the dashboard's map wants to see, in their own units.
//!
//! Columns: `id,recency_days,frequency,monetary,views,sessions,conversion,top_categories`.
//! `recency_days`, `frequency` and `monetary` are empty for a customer who never bought
//! (their recency is not a number of days, and zero revenue would read as a real figure);
//! `top_categories` holds up to [`TOP_CATEGORIES`] category interests (the first two levels
//! of the category path, as the segment KPIs use them), most viewed first, joined with `|`.
//! Feature-table runs with a label column write the same file as `id,label` (the known
//! class of each customer, e.g. an Iris species), so the dashboard can show it on hover.
//! The file exists because the Qdrant payload lives in a store the service may not share
//! with the run: the run folder stays the one thing to copy to serve a run.

use std::collections::BTreeMap;

use super::ReportError;

/// Most category interests listed per customer.
pub const TOP_CATEGORIES: usize = 3;

/// One customer's row.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerProfile {
    /// Recency, frequency (invoices) and net revenue; `None` for a customer who never bought.
    pub rfm: Option<[f64; 3]>,
    /// Product views.
    pub views: f64,
    /// Browsing sessions.
    pub sessions: f64,
    /// Purchases per view.
    pub conversion: f64,
    /// Category interests, most viewed first.
    pub top_categories: Vec<String>,
}

/// Category interests of a customer's events per category, most events first (ties by
/// name), at most [`TOP_CATEGORIES`]. `interest` maps a full category code to its interest.
pub fn top_categories<'a>(
    events_per_category: impl IntoIterator<Item = (&'a String, &'a u32)>,
    interest: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (category, count) in events_per_category {
        *totals.entry(interest(category)).or_default() += u64::from(*count);
    }
    let mut ranked: Vec<(String, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(TOP_CATEGORIES)
        .map(|(name, _)| name)
        .collect()
}

/// Renders the CSV text; `ids` and `profiles` are in the same customer order.
pub fn render_profiles(
    ids: &[String],
    profiles: &[CustomerProfile],
) -> Result<Vec<u8>, ReportError> {
    let err = |e: csv::Error| ReportError::Serialize {
        what: "profiles.csv",
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "id",
            "recency_days",
            "frequency",
            "monetary",
            "views",
            "sessions",
            "conversion",
            "top_categories",
        ])
        .map_err(err)?;
    for (id, p) in ids.iter().zip(profiles) {
        let rfm = |i: usize| p.rfm.map(|v| v[i].to_string()).unwrap_or_default();
        writer
            .write_record([
                id.clone(),
                rfm(0),
                rfm(1),
                rfm(2),
                p.views.to_string(),
                p.sessions.to_string(),
                p.conversion.to_string(),
                p.top_categories.join("|"),
            ])
            .map_err(err)?;
    }
    writer.into_inner().map_err(|e| ReportError::Serialize {
        what: "profiles.csv",
        message: e.to_string(),
    })
}

/// Renders `id,label` rows for a feature-table run with a label column.
pub fn render_labels(ids: &[String], labels: &[String]) -> Result<Vec<u8>, ReportError> {
    let err = |e: csv::Error| ReportError::Serialize {
        what: "profiles.csv",
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["id", "label"]).map_err(err)?;
    for (id, label) in ids.iter().zip(labels) {
        writer.write_record([id, label]).map_err(err)?;
    }
    writer.into_inner().map_err(|e| ReportError::Serialize {
        what: "profiles.csv",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_a_table_run() {
        let text = String::from_utf8(
            render_labels(&["a".into(), "b".into()], &["setosa".into(), "x,y".into()])
                .expect("csv"),
        )
        .expect("utf8");
        assert_eq!(text, "id,label\na,setosa\nb,\"x,y\"\n");
    }

    #[test]
    fn rows_and_top_categories() {
        let events: BTreeMap<String, u32> = [
            ("electronics.audio.headphone".to_string(), 2),
            ("electronics.audio.speaker".to_string(), 2),
            ("kids.toys".to_string(), 3),
            ("apparel.shoes".to_string(), 1),
            ("sport.bike".to_string(), 1),
        ]
        .into();
        let interest = |c: &str| c.split('.').take(2).collect::<Vec<_>>().join(".");
        let top = top_categories(&events, interest);
        assert_eq!(top, ["electronics.audio", "kids.toys", "apparel.shoes"]);
        let profiles = [
            CustomerProfile {
                rfm: Some([3.5, 2.0, 120.25]),
                views: 7.0,
                sessions: 2.0,
                conversion: 0.25,
                top_categories: top,
            },
            CustomerProfile {
                rfm: None,
                views: 0.0,
                sessions: 0.0,
                conversion: 0.0,
                top_categories: Vec::new(),
            },
        ];
        let text = String::from_utf8(
            render_profiles(&["17".into(), "a,b".into()], &profiles).expect("csv"),
        )
        .expect("utf8");
        assert_eq!(
            text,
            "id,recency_days,frequency,monetary,views,sessions,conversion,top_categories\n\
             17,3.5,2,120.25,7,2,0.25,electronics.audio|kids.toys|apparel.shoes\n\
             \"a,b\",,,,0,0,0,\n"
        );
    }
}
