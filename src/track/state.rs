//! Each tracked week's customer state, assembled from the per-week aggregates of one pass
//! over the files: RFM as of the week's end (every purchase up to Sunday 23:59:59 UTC) and
//! browsing over a trailing window of weeks, turned into the same features, documents and
//! rows as `segscope segment` builds ([`CustomerFeatures`]) so that a week and a one-off run
//! mean the same thing.

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array2, Axis, concatenate};

use super::weeks::IsoWeek;
use crate::features::behaviour;
use crate::ingest::store::{CustomerBrowsing, CustomerPurchases};
use crate::pipeline::store_segment::{Customer, CustomerFeatures};
use crate::settings::Settings;

/// Per-week aggregates of both files (either may be missing).
pub(crate) struct WeeklyAggregates {
    /// Purchases per ISO week and customer.
    pub(crate) purchases: BTreeMap<IsoWeek, BTreeMap<String, CustomerPurchases>>,
    /// Browsing per ISO week and customer.
    pub(crate) browsing: BTreeMap<IsoWeek, BTreeMap<String, CustomerBrowsing>>,
    /// The first transaction: recency of a customer who never bought is measured from it.
    pub(crate) first_transaction: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a customer did inside the trailing window (not cumulative), the figures drift is
/// measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WindowActivity {
    /// Invoices with a purchase in the window.
    pub(crate) orders: f64,
    /// Net revenue in the window.
    pub(crate) revenue: f64,
    /// View events.
    pub(crate) views: f64,
    /// Cart events.
    pub(crate) carts: f64,
    /// Purchase events.
    pub(crate) purchases: f64,
    /// Sessions (a session spanning two weeks counts in each).
    pub(crate) sessions: f64,
}

/// One week's customers, in id order.
pub(crate) struct WeekState {
    /// The week.
    pub(crate) week: IsoWeek,
    /// Customer ids (everyone who bought up to the week's end or browsed in the window).
    pub(crate) ids: Vec<String>,
    /// Features as `segscope segment` builds them, at the week's end.
    pub(crate) features: CustomerFeatures,
    /// Activity in the trailing window.
    pub(crate) activity: Vec<WindowActivity>,
    /// Browsing events per category family (first level of the category path) in the
    /// window; empty for a customer who did not browse.
    pub(crate) families: Vec<BTreeMap<String, f64>>,
}

/// The first level of a category path: `pets.aquarium` → `pets`.
pub(crate) fn family(category: &str) -> &str {
    category.split('.').next().unwrap_or(category)
}

/// Builds the state of every week in `weeks` (ascending).
pub(crate) fn week_states(
    data: &WeeklyAggregates,
    weeks: &[IsoWeek],
    window_weeks: u32,
    settings: &Settings,
) -> Vec<WeekState> {
    let mut cumulative: BTreeMap<String, CustomerPurchases> = BTreeMap::new();
    let mut history = data.purchases.iter().peekable();
    let mut out = Vec::with_capacity(weeks.len());
    for &week in weeks {
        while let Some((w, customers)) = history.next_if(|(w, _)| **w <= week) {
            let _ = w;
            for (id, p) in customers {
                match cumulative.get_mut(id) {
                    Some(c) => c.merge(p),
                    None => {
                        cumulative.insert(id.clone(), p.clone());
                    }
                }
            }
        }
        let window: Vec<IsoWeek> = (0..window_weeks.max(1)).map(|i| week.minus(i)).collect();
        let mut browsing: BTreeMap<&str, CustomerBrowsing> = BTreeMap::new();
        let mut window_purchases: BTreeMap<&str, CustomerPurchases> = BTreeMap::new();
        for w in &window {
            for (id, b) in data.browsing.get(w).into_iter().flatten() {
                match browsing.get_mut(id.as_str()) {
                    Some(mine) => mine.merge(b),
                    None => {
                        browsing.insert(id, b.clone());
                    }
                }
            }
            for (id, p) in data.purchases.get(w).into_iter().flatten() {
                match window_purchases.get_mut(id.as_str()) {
                    Some(mine) => mine.merge(p),
                    None => {
                        window_purchases.insert(id, p.clone());
                    }
                }
            }
        }
        let ids: BTreeSet<&str> = cumulative
            .keys()
            .map(String::as_str)
            .chain(browsing.keys().copied())
            .collect();
        let customers: Vec<Customer<'_>> = ids
            .iter()
            .map(|id| Customer {
                id,
                purchases: cumulative.get(*id),
                browsing: browsing.get(id),
            })
            .collect();
        let reference = week.end();
        let window_days = data.first_transaction.map_or(0.0, |first| {
            (reference - first).num_seconds().max(0) as f64 / 86_400.0
        });
        let features = CustomerFeatures::build(&customers, reference, window_days, settings);
        let activity = customers
            .iter()
            .map(|c| {
                let p = window_purchases.get(c.id);
                let b = c.browsing.map(behaviour);
                WindowActivity {
                    orders: p.map_or(0.0, |p| f64::from(p.invoices)),
                    revenue: p.map_or(0.0, |p| p.net_revenue),
                    views: b.map_or(0.0, |b| b.views),
                    carts: b.map_or(0.0, |b| b.carts),
                    purchases: b.map_or(0.0, |b| b.purchases),
                    sessions: b.map_or(0.0, |b| b.sessions),
                }
            })
            .collect();
        let families = customers
            .iter()
            .map(|c| {
                let mut f: BTreeMap<String, f64> = BTreeMap::new();
                for (category, n) in c.browsing.map(|b| &b.categories).into_iter().flatten() {
                    *f.entry(family(category).to_string()).or_insert(0.0) += f64::from(*n);
                }
                f
            })
            .collect();
        out.push(WeekState {
            week,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            features,
            activity,
            families,
        });
    }
    out
}

/// The rows of several feature sets, one after the other (the fit weeks stacked).
pub(crate) fn stack(parts: &[CustomerFeatures]) -> CustomerFeatures {
    let blocks = |f: fn(&CustomerFeatures) -> &Array2<f64>, cols: usize| {
        let views: Vec<_> = parts.iter().map(|p| f(p).view()).collect();
        concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, cols)))
    };
    CustomerFeatures {
        rfm: parts.iter().flat_map(|p| p.rfm.iter().copied()).collect(),
        rfm_block: blocks(|p| &p.rfm_block, 3),
        behaviour_block: blocks(|p| &p.behaviour_block, 3),
        profile: blocks(|p| &p.profile, 6),
        documents: parts
            .iter()
            .flat_map(|p| p.documents.iter().cloned())
            .collect(),
    }
}

/// The given rows of a feature set, in the given order.
pub(crate) fn select(f: &CustomerFeatures, rows: &[usize]) -> CustomerFeatures {
    CustomerFeatures {
        rfm: rows.iter().map(|&i| f.rfm[i]).collect(),
        rfm_block: f.rfm_block.select(Axis(0), rows),
        behaviour_block: f.behaviour_block.select(Axis(0), rows),
        profile: f.profile.select(Axis(0), rows),
        documents: rows.iter().map(|&i| f.documents[i].clone()).collect(),
    }
}
