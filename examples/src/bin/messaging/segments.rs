//! `messaging segments`: prints `{"encoding":"GSM-7"|"UCS-2","segments":N,"units":N}`.

use messaging::text::{sms, translit::transliterate};
use serde_json::json;

use crate::Output;

/// Arguments of `messaging segments`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also report the transliterated text and its count (under `"transliterated"`).
    #[arg(long)]
    translit: bool,
    /// The SMS text.
    text: String,
}

/// Counts the segments.
pub(crate) fn run(args: Args) -> Output {
    let a = sms::analyze(&args.text);
    let mut json = json!({
        "encoding": a.encoding,
        "segments": a.segments,
        "units": a.units,
    });
    if args.translit {
        let latin = transliterate(&args.text);
        let t = sms::analyze(&latin);
        json["transliterated"] = json!({
            "text": latin,
            "encoding": t.encoding,
            "segments": t.segments,
            "units": t.units,
        });
    }
    Output::ok(json)
}
