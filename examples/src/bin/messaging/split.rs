//! `messaging split`: prints `{"parts":["...", ...]}`; a text that cannot be split (a link longer
//! than a part) prints `{"parts":[],"error":"..."}` and exits 1.

use messaging::ChannelKind;
use messaging::text::split::{SplitConfig, split_texts};
use serde_json::json;

use crate::Output;

/// Arguments of `messaging split`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The channel; it decides the unit (characters, UTF-16 units, SMS septets/UCS-2 units).
    #[arg(long, value_parser = crate::parse_channel)]
    channel: ChannelKind,
    /// The longest part in the channel's unit (default: 500; one segment for SMS).
    #[arg(long)]
    max: Option<usize>,
    /// The text.
    text: String,
}

/// Splits the text.
pub(crate) fn run(args: Args) -> Output {
    let mut config = SplitConfig::for_kind(args.channel);
    if let Some(max) = args.max {
        config = config.max(max);
    }
    match split_texts(&args.text, &config) {
        Ok(parts) => Output::ok(json!({ "parts": parts })),
        Err(e) => Output::fail(json!({ "parts": [], "error": e.to_string() })),
    }
}
