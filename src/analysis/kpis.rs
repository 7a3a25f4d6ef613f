//! Business KPIs per segment for store data: what a marketer acts on.
//!
//! Owns the arithmetic only (no I/O, no wording): size and share, RFM means and medians
//! over the segment's buyers, revenue and its share, average order value, browsing
//! conversion, the categories and brands a segment over-indexes on, and how a segment
//! differs from its nearest other segment. Names and sentences are the narrator's job.
//!
//! Decisions, each visible in the output:
//! - RFM figures are over *buyers* only (customers with at least one non-cancelled
//!   invoice); a segment of browsers has none and says so (`buyers = 0`, figures absent)
//!   instead of averaging zeros into a recency nobody has.
//! - Average order value is the segment's net revenue over its invoices (a pooled ratio,
//!   so a customer with many orders weighs in proportion, as in a finance report).
//! - Conversion is purchase events over view events, pooled over the segment's browsers.
//! - Lift is customer-based: the share of the segment's browsers who touched a category
//!   (or brand) over the same share in the whole base. Counting customers rather than
//!   events keeps one heavy user from making a category look like the segment's. An
//!   interest is reported only when at least [`MIN_SUPPORT_SHARE`] of the segment's
//!   browsers and [`MIN_SUPPORT_CUSTOMERS`] customers touched it, and its lift is above
//!   [`MIN_LIFT`].

use ndarray::{ArrayView2, Axis};
use serde::Serialize;

use crate::domain::Partition;

/// An interest is over-indexed only above this lift.
pub const MIN_LIFT: f64 = 1.2;
/// ... and only if at least this share of the segment's browsers touched it ...
pub const MIN_SUPPORT_SHARE: f64 = 0.1;
/// ... and at least this many of them.
pub const MIN_SUPPORT_CUSTOMERS: usize = 5;
/// Over-indexed interests listed per segment and kind.
pub const TOP_INTERESTS: usize = 3;
/// KPI differences listed against the nearest segment.
pub const TOP_DIFFERENCES: usize = 3;

/// One customer's purchase record (present only for buyers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurchaseFacts {
    /// Days from the last purchase to the reference instant.
    pub recency_days: f64,
    /// Distinct non-cancelled invoices.
    pub invoices: f64,
    /// Net revenue (purchases minus cancellations).
    pub net_revenue: f64,
}

/// One customer's browsing record (present only for browsers).
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsingFacts {
    /// View events.
    pub views: f64,
    /// Purchase events.
    pub purchases: f64,
    /// Indices into [`Interests::names`] of the categories and brands the customer touched,
    /// sorted and unique.
    pub interests: Vec<u32>,
}

/// What a KPI table needs to know about one customer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerFacts {
    /// Purchases, when the customer bought.
    pub purchases: Option<PurchaseFacts>,
    /// Browsing, when the customer browsed.
    pub browsing: Option<BrowsingFacts>,
}

/// What an interest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterestKind {
    /// A product category (first two levels of the category path).
    Category,
    /// A brand.
    Brand,
}

/// The interests (categories and brands) customers can touch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interests {
    /// Kind and name of each interest, indexed by the ids in [`BrowsingFacts::interests`].
    pub names: Vec<(InterestKind, String)>,
}

/// A mean and a median.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
}

/// An interest a segment over-indexes on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interest {
    /// Category or brand name.
    pub name: String,
    /// Share of the segment's browsers who touched it.
    pub segment_share: f64,
    /// Share of all browsers who touched it.
    pub base_share: f64,
    /// `segment_share / base_share`.
    pub lift: f64,
    /// The segment's browsers who touched it.
    pub customers: usize,
}

/// One KPI compared with the nearest segment's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiDifference {
    /// KPI key (`monetary_median`, `recency_median_days`, ...).
    pub kpi: &'static str,
    /// This segment's value.
    pub value: f64,
    /// The nearest segment's value.
    pub nearest_value: f64,
}

/// How a segment differs from the segment closest to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearestSegment {
    /// The nearest segment's id (1-based, as shown to people).
    pub segment: usize,
    /// Euclidean distance between the two centroids in the clustering space.
    pub centroid_distance: f64,
    /// The KPIs that differ most (largest |log ratio|), largest first.
    pub differences: Vec<KpiDifference>,
}

/// The business KPIs of one segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusinessKpis {
    /// Customers with at least one non-cancelled invoice.
    pub buyers: usize,
    /// Customers with at least one browsing event.
    pub browsers: usize,
    /// Share of the segment's customers who bought.
    pub buyer_share: f64,
    /// Days since the last purchase, over buyers.
    pub recency_days: Option<Summary>,
    /// Distinct invoices, over buyers.
    pub frequency: Option<Summary>,
    /// Net revenue, over buyers.
    pub monetary: Option<Summary>,
    /// The segment's net revenue.
    pub revenue: f64,
    /// Share of the whole base's net revenue (0 when the base has none).
    pub revenue_share: f64,
    /// Net revenue per invoice.
    pub average_order_value: Option<f64>,
    /// Purchase events per view event, over browsers.
    pub conversion_rate: Option<f64>,
    /// Categories over-indexed against the whole base, by decreasing lift.
    pub top_categories: Vec<Interest>,
    /// Brands over-indexed against the whole base, by decreasing lift.
    pub top_brands: Vec<Interest>,
    /// The closest other segment and how this one differs from it.
    pub nearest: Option<NearestSegment>,
}

/// Computes every segment's KPIs. `x` is the clustering space (rows aligned with
/// `customers`), used only to find each segment's nearest neighbour segment.
pub fn segment_kpis(
    customers: &[CustomerFacts],
    interests: &Interests,
    partition: &Partition,
    x: ArrayView2<f64>,
) -> Vec<BusinessKpis> {
    let k = partition.k();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, label) in partition.labels().iter().enumerate() {
        if let Some(s) = label {
            members[*s].push(i);
        }
    }
    let total_revenue: f64 = customers
        .iter()
        .filter_map(|c| c.purchases.map(|p| p.net_revenue))
        .sum();
    let base = interest_counts(customers, interests, 0..customers.len());
    let mut kpis: Vec<BusinessKpis> = members
        .iter()
        .map(|rows| own_kpis(customers, interests, rows, total_revenue, &base))
        .collect();
    let centroids: Vec<Vec<f64>> = members
        .iter()
        .map(|rows| {
            x.select(Axis(0), rows)
                .mean_axis(Axis(0))
                .map(|m| m.to_vec())
                .unwrap_or_default()
        })
        .collect();
    let nearest: Vec<Option<NearestSegment>> = (0..k)
        .map(|s| {
            let (other, distance) = (0..k)
                .filter(|&o| o != s)
                .map(|o| (o, euclidean(&centroids[s], &centroids[o])))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))?;
            Some(NearestSegment {
                segment: other + 1,
                centroid_distance: distance,
                differences: differences(&kpis[s], &kpis[other]),
            })
        })
        .collect();
    for (kpi, near) in kpis.iter_mut().zip(nearest) {
        kpi.nearest = near;
    }
    kpis
}

/// Customers (browsers) per interest, and the number of browsers.
struct InterestCounts {
    browsers: usize,
    per_interest: Vec<usize>,
}

fn interest_counts(
    customers: &[CustomerFacts],
    interests: &Interests,
    rows: impl Iterator<Item = usize>,
) -> InterestCounts {
    let mut counts = InterestCounts {
        browsers: 0,
        per_interest: vec![0; interests.names.len()],
    };
    for row in rows {
        if let Some(b) = &customers[row].browsing {
            counts.browsers += 1;
            for &i in &b.interests {
                if let Some(c) = counts.per_interest.get_mut(i as usize) {
                    *c += 1;
                }
            }
        }
    }
    counts
}

fn own_kpis(
    customers: &[CustomerFacts],
    interests: &Interests,
    rows: &[usize],
    total_revenue: f64,
    base: &InterestCounts,
) -> BusinessKpis {
    let buys: Vec<PurchaseFacts> = rows
        .iter()
        .filter_map(|&r| customers[r].purchases)
        .collect();
    let summary = |values: Vec<f64>| summarize(values);
    // `+ 0.0`: an empty float sum is -0.0, which would print as "-0%".
    let revenue: f64 = buys.iter().map(|p| p.net_revenue).sum::<f64>() + 0.0;
    let invoices: f64 = buys.iter().map(|p| p.invoices).sum();
    let (views, purchase_events) = rows
        .iter()
        .filter_map(|&r| customers[r].browsing.as_ref())
        .fold((0.0, 0.0), |(v, p), b| (v + b.views, p + b.purchases));
    let own = interest_counts(customers, interests, rows.iter().copied());
    let top = |kind: InterestKind| over_indexed(interests, kind, &own, base);
    BusinessKpis {
        buyers: buys.len(),
        browsers: own.browsers,
        buyer_share: buys.len() as f64 / rows.len().max(1) as f64,
        recency_days: summary(buys.iter().map(|p| p.recency_days).collect()),
        frequency: summary(buys.iter().map(|p| p.invoices).collect()),
        monetary: summary(buys.iter().map(|p| p.net_revenue).collect()),
        revenue,
        revenue_share: if total_revenue > 0.0 {
            revenue / total_revenue
        } else {
            0.0
        },
        average_order_value: (invoices > 0.0).then(|| revenue / invoices),
        conversion_rate: (views > 0.0).then(|| purchase_events / views),
        top_categories: top(InterestKind::Category),
        top_brands: top(InterestKind::Brand),
        nearest: None,
    }
}

fn over_indexed(
    interests: &Interests,
    kind: InterestKind,
    own: &InterestCounts,
    base: &InterestCounts,
) -> Vec<Interest> {
    if own.browsers == 0 || base.browsers == 0 {
        return Vec::new();
    }
    let mut found: Vec<Interest> = interests
        .names
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k == kind)
        .filter_map(|(i, (_, name))| {
            let customers = own.per_interest[i];
            let segment_share = customers as f64 / own.browsers as f64;
            let base_share = base.per_interest[i] as f64 / base.browsers as f64;
            let lift = segment_share / base_share;
            (customers >= MIN_SUPPORT_CUSTOMERS
                && segment_share >= MIN_SUPPORT_SHARE
                && lift > MIN_LIFT)
                .then(|| Interest {
                    name: name.clone(),
                    segment_share,
                    base_share,
                    lift,
                    customers,
                })
        })
        .collect();
    found.sort_by(|a, b| b.lift.total_cmp(&a.lift).then_with(|| a.name.cmp(&b.name)));
    found.truncate(TOP_INTERESTS);
    found
}

/// Mean and median of `values` (`None` when empty); the median of an even count is the mean
/// of the two middle values.
pub fn summarize(mut values: Vec<f64>) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some(Summary {
        mean: values.iter().sum::<f64>() / n as f64,
        median,
    })
}

fn euclidean(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// The comparable KPIs of a segment, by key. Recency gets one day added before ratios are
/// taken, so a median of 0 days still compares.
fn comparable(k: &BusinessKpis) -> [(&'static str, Option<f64>); 6] {
    [
        ("recency_median_days", k.recency_days.map(|s| s.median)),
        ("frequency_median", k.frequency.map(|s| s.median)),
        ("monetary_median", k.monetary.map(|s| s.median)),
        ("average_order_value", k.average_order_value),
        ("conversion_rate", k.conversion_rate),
        ("buyer_share", Some(k.buyer_share)),
    ]
}

/// The KPIs on which `a` and `b` differ most, by |ln(a/b)|; a pair that cannot form a
/// positive ratio (a zero or negative value) is listed after every pair that can.
fn differences(a: &BusinessKpis, b: &BusinessKpis) -> Vec<KpiDifference> {
    let mut found: Vec<(f64, KpiDifference)> = comparable(a)
        .into_iter()
        .zip(comparable(b))
        .filter_map(|((key, va), (_, vb))| {
            let (va, vb) = (va?, vb?);
            let shift = if key == "recency_median_days" {
                1.0
            } else {
                0.0
            };
            let score = if va + shift > 0.0 && vb + shift > 0.0 {
                ((va + shift) / (vb + shift)).ln().abs()
            } else {
                0.0
            };
            (va != vb).then_some((
                score,
                KpiDifference {
                    kpi: key,
                    value: va,
                    nearest_value: vb,
                },
            ))
        })
        .collect();
    found.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.kpi.cmp(y.1.kpi)));
    found
        .into_iter()
        .take(TOP_DIFFERENCES)
        .map(|(_, d)| d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn buyer(recency: f64, invoices: f64, revenue: f64) -> CustomerFacts {
        CustomerFacts {
            purchases: Some(PurchaseFacts {
                recency_days: recency,
                invoices,
                net_revenue: revenue,
            }),
            browsing: None,
        }
    }

    fn browser(views: f64, purchases: f64, interests: Vec<u32>) -> CustomerFacts {
        CustomerFacts {
            purchases: None,
            browsing: Some(BrowsingFacts {
                views,
                purchases,
                interests,
            }),
        }
    }

    #[test]
    fn rfm_revenue_and_order_value_are_over_buyers() {
        let customers = vec![
            buyer(10.0, 2.0, 100.0),
            buyer(20.0, 4.0, 300.0),
            buyer(30.0, 1.0, 50.0),
            browser(10.0, 1.0, vec![]),
        ];
        let partition = Partition::from_raw([Some(0), Some(0), Some(1), Some(1)]);
        let x = array![[0.0], [0.0], [1.0], [1.0]];
        let kpis = segment_kpis(&customers, &Interests::default(), &partition, x.view());
        let first = &kpis[0];
        assert_eq!(first.buyers, 2);
        assert_eq!(first.browsers, 0);
        assert_eq!(
            first.recency_days,
            Some(Summary {
                mean: 15.0,
                median: 15.0
            })
        );
        assert_eq!(first.revenue, 400.0);
        assert_eq!(first.revenue_share, 400.0 / 450.0);
        assert_eq!(first.average_order_value, Some(400.0 / 6.0));
        assert_eq!(first.conversion_rate, None);
        let second = &kpis[1];
        assert_eq!((second.buyers, second.browsers), (1, 1));
        assert_eq!(second.conversion_rate, Some(0.1));
        assert_eq!(second.monetary.map(|s| s.median), Some(50.0));
        let near = first.nearest.as_ref().unwrap();
        assert_eq!(near.segment, 2);
        assert_eq!(near.centroid_distance, 1.0);
        // monetary median 200 vs 50 (ln 4) beats AOV 66.7 vs 50 and recency 16 vs 31 days.
        assert_eq!(near.differences[0].kpi, "monetary_median");
        assert_eq!(near.differences[0].value, 200.0);
        assert_eq!(near.differences[0].nearest_value, 50.0);
    }

    #[test]
    fn lift_counts_customers_and_needs_support() {
        let interests = Interests {
            names: vec![
                (InterestKind::Category, "kids.toys".into()),
                (InterestKind::Category, "sport.ski".into()),
                (InterestKind::Brand, "lego".into()),
            ],
        };
        // Segment 0: 6 browsers, all touch kids.toys and lego; one touches sport.ski.
        // Segment 1: 6 browsers, 2 touch kids.toys, all touch sport.ski.
        let mut customers = Vec::new();
        for i in 0..6 {
            let mut touched = vec![0, 2];
            if i == 0 {
                touched.insert(1, 1);
            }
            customers.push(browser(5.0, 0.0, touched));
        }
        for i in 0..6 {
            let touched = if i < 2 { vec![0, 1] } else { vec![1] };
            customers.push(browser(5.0, 0.0, touched));
        }
        let labels: Vec<Option<usize>> = (0..12).map(|i| Some(usize::from(i >= 6))).collect();
        let partition = Partition::from_raw(labels);
        let x = ndarray::Array2::<f64>::zeros((12, 1));
        let kpis = segment_kpis(&customers, &interests, &partition, x.view());
        // kids.toys: 6/6 in segment 0 against 8/12 overall → lift 1.5.
        assert_eq!(kpis[0].top_categories.len(), 1);
        let toys = &kpis[0].top_categories[0];
        assert_eq!(toys.name, "kids.toys");
        assert_eq!(toys.customers, 6);
        assert!((toys.lift - 1.5).abs() < 1e-12);
        assert_eq!(kpis[0].top_brands[0].name, "lego");
        assert!((kpis[0].top_brands[0].lift - 2.0).abs() < 1e-12);
        // sport.ski: 6/6 against 7/12 → lift 12/7; kids.toys in segment 1 (2 customers) lacks support.
        assert_eq!(kpis[1].top_categories.len(), 1);
        assert_eq!(kpis[1].top_categories[0].name, "sport.ski");
        assert!((kpis[1].top_categories[0].lift - 12.0 / 7.0).abs() < 1e-12);
        assert!(kpis[1].top_brands.is_empty());
    }

    #[test]
    fn a_segment_without_buyers_has_no_rfm() {
        let customers = vec![browser(4.0, 1.0, vec![]), browser(6.0, 0.0, vec![])];
        let partition = Partition::from_raw([Some(0), Some(0)]);
        let x = ndarray::Array2::<f64>::zeros((2, 1));
        let kpis = segment_kpis(&customers, &Interests::default(), &partition, x.view());
        assert_eq!(kpis[0].buyers, 0);
        assert_eq!(kpis[0].recency_days, None);
        assert_eq!(kpis[0].average_order_value, None);
        assert_eq!(kpis[0].revenue_share, 0.0);
        assert!(
            kpis[0].revenue.is_sign_positive(),
            "no buyers: revenue 0, not -0"
        );
        assert_eq!(kpis[0].conversion_rate, Some(0.1));
        assert!(kpis[0].nearest.is_none());
    }
}
