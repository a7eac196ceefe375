//! `messaging lint`: prints `{"diagnostics":[{"rule","severity","message","span","hint"}]}`;
//! exit status 1 when any diagnostic is an error.

use messaging::hygiene::lint::{Level, LintContext, Linter, Rule, has_errors};
use messaging::{ChannelKind, Purpose};
use serde_json::json;

use crate::Output;

/// Arguments of `messaging lint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The channel the message goes out on.
    #[arg(long, value_parser = crate::parse_channel)]
    channel: ChannelKind,
    /// The person has not written to us yet (no open dialogue).
    #[arg(long)]
    first_contact: bool,
    /// The same text goes to many people.
    #[arg(long)]
    bulk: bool,
    /// Why the message is sent.
    #[arg(long, value_parser = crate::parse_purpose, default_value = "service")]
    purpose: Purpose,
    /// The person's name, as the message should address them.
    #[arg(long)]
    name: Option<String>,
    /// The message carries an opt-out button.
    #[arg(long)]
    opt_out_button: bool,
    /// Silence a rule (repeatable).
    #[arg(long, value_name = "RULE")]
    allow: Vec<Rule>,
    /// Report a rule as a warning (repeatable).
    #[arg(long, value_name = "RULE")]
    warn: Vec<Rule>,
    /// Report a rule as an error (repeatable).
    #[arg(long, value_name = "RULE")]
    deny: Vec<Rule>,
    /// The rendered message.
    text: String,
}

/// Lints the text.
pub(crate) fn run(args: Args) -> Output {
    let mut linter = Linter::new();
    for (rules, level) in [
        (&args.allow, Level::Allow),
        (&args.warn, Level::Warn),
        (&args.deny, Level::Deny),
    ] {
        for rule in rules {
            linter = linter.level(*rule, level);
        }
    }
    let mut ctx = LintContext::new(args.channel)
        .first_contact(args.first_contact)
        .bulk(args.bulk)
        .purpose(args.purpose)
        .opt_out_button(args.opt_out_button);
    if let Some(name) = args.name.as_deref() {
        ctx = ctx.recipient_name(name);
    }
    let diagnostics = linter.lint(&args.text, &ctx);
    let json = json!({ "diagnostics": diagnostics });
    if has_errors(&diagnostics) {
        Output::fail(json)
    } else {
        Output::ok(json)
    }
}
