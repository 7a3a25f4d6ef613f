//! Browsing behaviour per customer as plain numbers (views, carts, purchases, conversion,
//! sessions), the numeric companion of the browsing document that the embedders read.
//! Owns only the arithmetic; scaling happens later with the other features.

use crate::ingest::store::CustomerBrowsing;

/// One customer's browsing behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrowsingBehaviour {
    /// `view` events.
    pub views: f64,
    /// `cart` events.
    pub carts: f64,
    /// `purchase` events.
    pub purchases: f64,
    /// Purchases per view; 0 when there are no views. Not capped at 1: a customer who
    /// buys more often than they view (views before the data window, or buying from a
    /// list) is unusual and the number should show it rather than hide it.
    pub conversion: f64,
    /// Distinct sessions.
    pub sessions: f64,
}

/// The behaviour numbers of one customer.
pub fn behaviour(b: &CustomerBrowsing) -> BrowsingBehaviour {
    let views = f64::from(b.views);
    let purchases = f64::from(b.purchases);
    BrowsingBehaviour {
        views,
        carts: f64::from(b.carts),
        purchases,
        conversion: if b.views == 0 { 0.0 } else { purchases / views },
        sessions: f64::from(b.sessions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use crate::ingest::store::read_events;
    use crate::ingest::store::testing::{event_settings, write};

    #[test]
    fn conversion_is_purchases_per_view_and_zero_without_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "e.csv",
            b"event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n\
              2019-10-01 00:00:00 UTC,view,1,,,,1,1,a\n\
              2019-10-01 00:01:00 UTC,view,2,,,,1,1,a\n\
              2019-10-01 00:02:00 UTC,view,3,,,,1,1,b\n\
              2019-10-01 00:03:00 UTC,view,4,,,,1,1,b\n\
              2019-10-01 00:04:00 UTC,cart,4,,,,1,1,b\n\
              2019-10-01 00:05:00 UTC,purchase,4,,,,1,1,b\n\
              2019-10-01 00:05:00 UTC,purchase,4,,,,1,2,c\n",
        );
        let log = read_events(&path, &event_settings(), b',', None, &NoProgress).unwrap();
        assert_eq!(
            behaviour(&log.customers["1"]),
            BrowsingBehaviour {
                views: 4.0,
                carts: 1.0,
                purchases: 1.0,
                conversion: 0.25,
                sessions: 2.0
            }
        );
        assert_eq!(behaviour(&log.customers["2"]).conversion, 0.0);
    }
}
