//! Files in, validated tables out.
//!
//! Owns reading customer data from disk: parsing, streaming, and precise errors that name
//! the file, line and column. It does not scale, cluster or interpret the values; rows it
//! cannot use are dropped, counted per reason and reported, never silently.

pub mod feature_table;
pub mod store;

pub use feature_table::{
    FeatureTable, FeatureTableSpec, IngestError, IngestReport, read_feature_table,
};
pub use store::{
    BrowsingLog, EventSettings, SourceReport, StoreIngestError, TransactionLedger,
    TransactionSettings, read_events, read_transactions,
};
