//! `messaging phone`: prints `{"input":"...","e164":"+7...","valid":true}`, or
//! `{"input":"...","valid":false,"error":"..."}` with exit status 1.

use messaging::{Phone, Region};
use serde_json::json;

use crate::Output;

/// Arguments of `messaging phone`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The region national numbers are read in (ISO 3166-1 alpha-2).
    #[arg(long, default_value = "RU")]
    region: Region,
    /// The number as written (`8 (912) 345-67-89`, `+7 912 345 67 89`).
    input: String,
}

/// Parses the number.
pub(crate) fn run(args: Args) -> Output {
    match Phone::parse_in(&args.input, args.region) {
        Ok(p) => Output::ok(json!({ "input": args.input, "e164": p.as_str(), "valid": true })),
        Err(e) => {
            Output::fail(json!({ "input": args.input, "valid": false, "error": e.to_string() }))
        }
    }
}
