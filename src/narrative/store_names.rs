//! The built-in narrator for store data: segment names and descriptions from business KPIs,
//! in the words a marketer uses ("Lapsed big spenders — appliances/kitchen").
//!
//! A name has up to three parts, each read off one KPI against the whole base:
//! - status, from the median days since the last purchase: *New* (within [`ACTIVE_DAYS`]
//!   and a median of one order), *Active* (within [`ACTIVE_DAYS`] and at most the base's
//!   median), *Lapsed* (at least twice the base's median or beyond [`LAPSED_DAYS`]), else
//!   no word;
//! - value, from median net revenue and orders: *big spenders* (at least twice the base's
//!   median revenue), *low spenders* (at most half), *frequent* (at least twice the base's
//!   median orders), *one-time buyers* (median of one order); a segment where fewer than
//!   [`BUYER_SHARE_FOR_VALUE`] bought is *browsers who rarely buy* instead;
//! - interest, after a dash: the category the segment over-indexes on most.
//!
//! Names are contrastive because every word is relative to the base, and unique: clashing
//! names gain the top brand, then the segment number.

use crate::analysis::kpis::BusinessKpis;
use crate::narrative::SegmentText;
use crate::narrative::figures::difference_key;
use crate::narrative::reading::figure;

/// A median recency at most this many days can be called active.
pub const ACTIVE_DAYS: f64 = 30.0;
/// A median recency beyond this many days is lapsed whatever the base does.
pub const LAPSED_DAYS: f64 = 120.0;
/// Below this share of buyers, a segment is named for its browsing, not its spending.
pub const BUYER_SHARE_FOR_VALUE: f64 = 0.2;

/// The whole base's medians, which the names are relative to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseMedians {
    /// Median days since the last purchase, over buyers.
    pub recency_days: Option<f64>,
    /// Median distinct invoices, over buyers.
    pub frequency: Option<f64>,
    /// Median net revenue, over buyers.
    pub monetary: Option<f64>,
}

/// Names and describes every segment (`kpis[s]` is segment `s + 1`, with `sizes[s]`
/// customers and `shares[s]` of the base); names are unique.
pub fn name_store_segments(
    kpis: &[BusinessKpis],
    sizes: &[usize],
    shares: &[f64],
    base: &BaseMedians,
) -> Vec<SegmentText> {
    let mut names: Vec<String> = kpis.iter().map(|k| compose(k, base)).collect();
    for round in 0..2 {
        let clashing: Vec<usize> = (0..names.len())
            .filter(|&i| (0..names.len()).any(|j| j != i && names[j] == names[i]))
            .collect();
        if clashing.is_empty() {
            break;
        }
        for i in clashing {
            let extra = match (round, kpis[i].top_brands.first()) {
                (0, Some(brand)) => format!(", {}", brand.name),
                (0, None) => continue,
                _ => format!(" (segment {})", i + 1),
            };
            names[i].push_str(&extra);
        }
    }
    // A clash that survived the brand round (no brand to add) gets the segment number.
    let clashing: Vec<usize> = (0..names.len())
        .filter(|&i| (0..names.len()).any(|j| j != i && names[j] == names[i]))
        .collect();
    for i in clashing {
        names[i].push_str(&format!(" (segment {})", i + 1));
    }
    kpis.iter()
        .zip(names)
        .enumerate()
        .map(|(s, (k, name))| {
            let (description, figures) = describe(k, s + 1, sizes[s], shares[s]);
            SegmentText {
                name,
                description,
                figures,
            }
        })
        .collect()
}

fn status(k: &BusinessKpis, base: &BaseMedians) -> Option<&'static str> {
    let recency = k.recency_days?.median;
    let base_recency = base.recency_days.unwrap_or(recency);
    if recency > LAPSED_DAYS || (base_recency > 0.0 && recency >= 2.0 * base_recency) {
        return Some("Lapsed");
    }
    let one_order = k.frequency.is_some_and(|f| f.median <= 1.0);
    if recency <= ACTIVE_DAYS && one_order {
        return Some("New");
    }
    if recency <= ACTIVE_DAYS && recency <= base_recency {
        return Some("Active");
    }
    None
}

fn value(k: &BusinessKpis, base: &BaseMedians) -> &'static str {
    if k.buyer_share < BUYER_SHARE_FOR_VALUE {
        return "browsers who rarely buy";
    }
    let ratio = |own: Option<f64>, all: Option<f64>| match (own, all) {
        (Some(own), Some(all)) if all > 0.0 => Some(own / all),
        _ => None,
    };
    let monetary = ratio(k.monetary.map(|s| s.median), base.monetary);
    let frequency = ratio(k.frequency.map(|s| s.median), base.frequency);
    let one_order = k.frequency.is_some_and(|f| f.median <= 1.0);
    match (monetary, frequency) {
        (Some(m), _) if m >= 2.0 => "big spenders",
        (_, Some(f)) if f >= 2.0 => "frequent buyers",
        _ if one_order => "one-time buyers",
        (Some(m), _) if m <= 0.5 => "low spenders",
        _ => "regular buyers",
    }
}

/// `furniture.living_room` → `furniture/living room`.
fn category_words(category: &str) -> String {
    category.replace('.', "/").replace('_', " ")
}

fn compose(k: &BusinessKpis, base: &BaseMedians) -> String {
    let value = value(k, base);
    let mut name = match status(k, base) {
        Some(status) if k.buyer_share >= BUYER_SHARE_FOR_VALUE => format!("{status} {value}"),
        _ => {
            let mut v = value.to_string();
            if let Some(first) = v.get(..1) {
                v = first.to_uppercase() + &v[1..];
            }
            v
        }
    };
    if let Some(category) = k.top_categories.first() {
        name.push_str(" — ");
        name.push_str(&category_words(&category.name));
    }
    name
}

fn money(v: f64) -> String {
    figure(v)
}

/// The description of segment `id` and the keys of the figures it states.
fn describe(k: &BusinessKpis, id: usize, size: usize, share: f64) -> (String, Vec<String>) {
    let key = |rest: &str| format!("segment.{id}.{rest}");
    let mut figures = vec![key("size"), key("share"), key("buyer_share")];
    let mut parts = vec![format!(
        "{size} customers ({}% of the base), {}% of them bought",
        figure(share * 100.0),
        figure(k.buyer_share * 100.0)
    )];
    if let (Some(r), Some(f), Some(m)) = (k.recency_days, k.frequency, k.monetary) {
        parts.push(format!(
            "buyers' medians: last purchase {} days ago, {} orders, {} net revenue",
            figure(r.median),
            figure(f.median),
            money(m.median)
        ));
        parts.push(format!(
            "{}% of all revenue",
            figure(k.revenue_share * 100.0)
        ));
        figures.extend([
            key("recency_days.median"),
            key("frequency.median"),
            key("monetary.median"),
            key("revenue_share"),
        ]);
    }
    if let Some(aov) = k.average_order_value {
        parts.push(format!("average order {}", money(aov)));
        figures.push(key("average_order_value"));
    }
    if let Some(c) = k.conversion_rate {
        figures.push(key("conversion_rate"));
        parts.push(format!(
            "{}% of product views end in a purchase",
            figure(c * 100.0)
        ));
    }
    for (list, items) in [
        ("top_categories", &k.top_categories),
        ("top_brands", &k.top_brands),
    ] {
        for rank in 1..=items.len() {
            figures.push(key(&format!("{list}.{rank}.lift")));
        }
    }
    let interests: Vec<String> = k
        .top_categories
        .iter()
        .chain(&k.top_brands)
        .map(|i| format!("{} (lift {})", category_words(&i.name), figure(i.lift)))
        .collect();
    if !interests.is_empty() {
        parts.push(format!("over-indexes on {}", interests.join(", ")));
    }
    let mut text = parts.join("; ");
    text.push('.');
    if let Some(near) = &k.nearest
        && let Some(d) = near.differences.first()
    {
        figures.extend(difference_key(id, d.kpi));
        figures.extend(difference_key(near.segment, d.kpi));
        text.push_str(&format!(
            " Closest to segment {}, from which it differs most in {} ({} against {}).",
            near.segment,
            d.kpi.replace('_', " "),
            figure(d.value),
            figure(d.nearest_value)
        ));
    }
    (text, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::kpis::{Interest, Summary};

    fn kpis(recency: f64, orders: f64, revenue: f64, buyer_share: f64, top: &str) -> BusinessKpis {
        let s = |v: f64| Some(Summary { mean: v, median: v });
        BusinessKpis {
            buyers: 10,
            browsers: 10,
            buyer_share,
            recency_days: s(recency),
            frequency: s(orders),
            monetary: s(revenue),
            revenue: revenue * 10.0,
            revenue_share: 0.25,
            average_order_value: Some(revenue / orders),
            conversion_rate: Some(0.05),
            top_categories: (!top.is_empty())
                .then(|| Interest {
                    name: top.into(),
                    segment_share: 0.6,
                    base_share: 0.2,
                    lift: 3.0,
                    customers: 6,
                })
                .into_iter()
                .collect(),
            top_brands: Vec::new(),
            nearest: None,
        }
    }

    const BASE: BaseMedians = BaseMedians {
        recency_days: Some(40.0),
        frequency: Some(4.0),
        monetary: Some(500.0),
    };

    #[test]
    fn names_read_status_value_and_interest_against_the_base() {
        let segments = [
            kpis(200.0, 9.0, 2_400.0, 1.0, "appliances.kitchen"),
            kpis(5.0, 20.0, 6_000.0, 1.0, "electronics.smartphone"),
            kpis(10.0, 1.0, 70.0, 1.0, "kids.toys"),
            kpis(20.0, 16.0, 480.0, 1.0, "apparel.shoes"),
            kpis(300.0, 1.0, 45.0, 1.0, ""),
            kpis(0.0, 0.0, 0.0, 0.0, "sport.bicycle"),
        ];
        let texts = name_store_segments(&segments, &[10; 6], &[1.0 / 6.0; 6], &BASE);
        let names: Vec<&str> = texts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Lapsed big spenders — appliances/kitchen",
                "Active big spenders — electronics/smartphone",
                "New one-time buyers — kids/toys",
                "Active frequent buyers — apparel/shoes",
                "Lapsed one-time buyers",
                "Browsers who rarely buy — sport/bicycle",
            ]
        );
        assert_eq!(
            texts[0].description,
            "10 customers (16.7% of the base), 100% of them bought; buyers' medians: last purchase \
             200 days ago, 9 orders, 2400 net revenue; 25% of all revenue; average order 267; 5% of \
             product views end in a purchase; over-indexes on appliances/kitchen (lift 3)."
        );
        assert_eq!(
            texts[0].figures,
            [
                "segment.1.size",
                "segment.1.share",
                "segment.1.buyer_share",
                "segment.1.recency_days.median",
                "segment.1.frequency.median",
                "segment.1.monetary.median",
                "segment.1.revenue_share",
                "segment.1.average_order_value",
                "segment.1.conversion_rate",
                "segment.1.top_categories.1.lift",
            ]
        );
    }

    #[test]
    fn clashing_names_become_unique() {
        let segments = [
            kpis(200.0, 9.0, 2_400.0, 1.0, ""),
            kpis(210.0, 9.0, 2_500.0, 1.0, ""),
        ];
        let texts = name_store_segments(&segments, &[10, 10], &[0.5, 0.5], &BASE);
        assert_eq!(texts[0].name, "Lapsed big spenders (segment 1)");
        assert_eq!(texts[1].name, "Lapsed big spenders (segment 2)");
    }
}
