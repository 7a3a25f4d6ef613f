//! RFM (recency, frequency, monetary) per customer from their purchase totals: the classic
//! three numbers a marketer reads a customer by. Owns only the arithmetic; which reference
//! instant to measure recency from is the caller's choice (the as-of instant or the end of
//! the data), and scaling happens later with the other features.

use chrono::{DateTime, Utc};

use crate::ingest::store::CustomerPurchases;

/// One customer's RFM values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm {
    /// Days from the last purchase to the reference (fractional; negative if the last
    /// purchase is after the reference, which the as-of filter prevents).
    pub recency_days: f64,
    /// Distinct invoices with a purchase (cancellations excluded).
    pub frequency: f64,
    /// Net revenue: purchases minus cancellations (may be negative).
    pub monetary: f64,
}

/// RFM of a customer at `reference`; `None` for a customer who never purchased (only
/// cancellations), who has no recency to measure.
pub fn rfm(p: &CustomerPurchases, reference: DateTime<Utc>) -> Option<Rfm> {
    let last = p.last_purchase?;
    if p.invoices == 0 {
        return None;
    }
    const MS_PER_DAY: f64 = 86_400_000.0;
    Some(Rfm {
        recency_days: (reference - last).num_milliseconds() as f64 / MS_PER_DAY,
        frequency: f64::from(p.invoices),
        monetary: p.net_revenue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn purchases(last: Option<DateTime<Utc>>, invoices: u32) -> CustomerPurchases {
        CustomerPurchases {
            invoices,
            cancelled_invoices: 1,
            lines: 3,
            net_revenue: 12.5,
            gross_revenue: 20.0,
            cancelled_revenue: 7.5,
            first_purchase: last,
            last_purchase: last,
        }
    }

    #[test]
    fn recency_in_days_frequency_and_net_monetary() {
        let last = Utc.with_ymd_and_hms(2010, 12, 1, 0, 0, 0).unwrap();
        let reference = Utc.with_ymd_and_hms(2010, 12, 11, 12, 0, 0).unwrap();
        let r = rfm(&purchases(Some(last), 2), reference).unwrap();
        assert_eq!(
            r,
            Rfm {
                recency_days: 10.5,
                frequency: 2.0,
                monetary: 12.5
            }
        );
    }

    #[test]
    fn only_cancellations_has_no_rfm() {
        let reference = Utc.with_ymd_and_hms(2010, 12, 11, 0, 0, 0).unwrap();
        assert_eq!(rfm(&purchases(None, 0), reference), None);
    }
}
