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
