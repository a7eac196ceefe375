//! Stop words: the one matcher the inbox and the sender governor both use to recognise "stop
//! writing to me".

/// The stop words recognised by default (compared case-insensitively, as the whole message or
/// its first word). "Отмена"/"cancel" are absent on purpose: to a clinic reminder they mean
/// "cancel my appointment".
pub const DEFAULT_STOP_WORDS: &[&str] = &[
    "стоп",
    "stop",
    "stopall",
    "отписаться",
    "отписка",
    "отпишите",
    "unsubscribe",
    "optout",
    "opt-out",
    "не писать",
    "хватит",
];

/// The words that undo an opt-out by default ("СТАРТ", "start"), matched like stop words.
pub const DEFAULT_START_WORDS: &[&str] = &["старт", "start", "unstop", "подписаться"];

/// Whether `text` is a stop word of `words`: the whole message or its first word(s), ignoring
/// case and punctuation ("Стоп!", "stop please"; not "стопка").
///
/// ```
/// use messaging_core::consent::{is_stop_word, DEFAULT_STOP_WORDS};
/// assert!(is_stop_word("СТОП", DEFAULT_STOP_WORDS));
/// assert!(is_stop_word("  Unsubscribe. ", DEFAULT_STOP_WORDS));
/// assert!(!is_stop_word("стопка книг", DEFAULT_STOP_WORDS));
/// ```
pub fn is_stop_word<S: AsRef<str>>(text: &str, words: &[S]) -> bool {
    let norm: String = text
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
    words.iter().any(|w| {
        let w = w.as_ref().to_lowercase();
        !w.is_empty()
            && (norm == w
                || norm
                    .strip_prefix(w.as_str())
                    .is_some_and(|rest| rest.starts_with(' ')))
    })
}
