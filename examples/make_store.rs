//! Writes a synthetic store (the demo's generator) at any size, for the store-data
//! benchmark (`bench/store.sh`) and for trying segscope on something bigger than the demo.
//!
//! `cargo run --release --example make_store -- DIR CUSTOMERS [EVENTS_SCALE] [ORDERS_SCALE] [SEED]`
//!
//! Prints one JSON line with what was planted (row counts per file and per problem).

use std::path::PathBuf;
use std::process::ExitCode;

use segscope::demo::synthetic_store::{StoreSpec, generate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: make_store DIR CUSTOMERS [EVENTS_SCALE] [ORDERS_SCALE] [SEED]";
    let (Some(dir), Some(customers)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let number = |i: usize, default: f64| -> Option<f64> {
        args.get(i).map_or(Some(default), |v| v.parse().ok())
    };
    let (Ok(customers), Some(events_scale), Some(orders_scale), Some(seed)) = (
        customers.parse::<usize>(),
        number(2, 1.0),
        number(3, 1.0),
        number(4, 42.0),
    ) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let spec = StoreSpec {
        events_scale,
        orders_scale,
        ..StoreSpec::demo(customers, seed as u64)
    };
    match generate(&spec, &PathBuf::from(dir)) {
        Ok(store) => {
            let c = &store.counts;
            println!(
                "{{\"customers\": {customers}, \"transaction_lines\": {}, \"event_lines\": {}, \"transactions\": \"{}\", \"events\": \"{}\", \"truth\": \"{}\"}}",
                c.transaction_lines,
                c.event_lines,
                store.transactions.display(),
                store.events.display(),
                store.truth_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make_store: {dir}: {e}");
            ExitCode::FAILURE
        }
    }
}
