//! Writes a synthetic store (the demo's generator) at any size, for the store-data
//! benchmark (`bench/store.sh`) and for trying segscope on something bigger than the demo.
//!
//! `cargo run --release --example make_store -- DIR CUSTOMERS [EVENTS_SCALE] [ORDERS_SCALE] [SEED] [WEEKS] [PLANTED_FROM]`
//!
//! WEEKS is the number of weeks of browsing (default 8); PLANTED_FROM, when given and not 0,
//! plants the weekly-tracking changes from that week on (`bench/track.sh`) and writes who
//! was planted to `DIR/planted.json`. Prints one JSON line with what was generated (row
//! counts per file and per problem).

use std::path::PathBuf;
use std::process::ExitCode;

use segscope::demo::synthetic_store::{PlantedChanges, StoreSpec, generate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: make_store DIR CUSTOMERS [EVENTS_SCALE] [ORDERS_SCALE] [SEED] [WEEKS] [PLANTED_FROM]";
    let (Some(dir), Some(customers)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let number = |i: usize, default: f64| -> Option<f64> {
        args.get(i).map_or(Some(default), |v| v.parse().ok())
    };
    let (
        Ok(customers),
        Some(events_scale),
        Some(orders_scale),
        Some(seed),
        Some(weeks),
        Some(planted_from),
    ) = (
        customers.parse::<usize>(),
        number(2, 1.0),
        number(3, 1.0),
        number(4, 42.0),
        number(5, 8.0),
        number(6, 0.0),
    )
    else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let demo = StoreSpec::demo(customers, seed as u64);
    let spec = StoreSpec {
        events_scale,
        orders_scale,
        weeks: weeks as u32,
        changes: (planted_from >= 1.0).then_some(PlantedChanges {
            from_week: planted_from as u32,
        }),
        ..demo
    };
    match generate(&spec, &PathBuf::from(dir)) {
        Ok(store) => {
            if let Some(planted) = &store.changes {
                let json = serde_json::json!({
                    "start": planted.start.to_rfc3339(),
                    "emerging": planted.emerging,
                    "migrants": planted.migrants,
                    "bots": planted.bots,
                });
                let path = PathBuf::from(dir).join("planted.json");
                if let Err(e) = std::fs::write(&path, json.to_string()) {
                    eprintln!("make_store: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
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
