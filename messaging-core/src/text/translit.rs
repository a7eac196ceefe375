//! Transliteration of Russian to Latin, to fit an SMS into GSM-7 (160 characters per segment
//! instead of 70).
//!
//! The letter table is the common "passport-like" one (ж → zh, х → kh, ц → ts, щ → shch,
//! ю → yu, я → ya; ъ and ь are dropped). Typographic characters outside GSM-7 that Russian
//! texts use (`«»`, `—`, `…`, `№`, curly quotes, no-break space) get ASCII stand-ins, so a
//! transliterated clinic text usually becomes pure GSM-7.
//!
//! ```
//! use messaging_core::text::translit::transliterate;
//! use messaging_core::text::sms::{analyze, SmsEncoding};
//! let t = transliterate("Анна, приём «Терапевт» — завтра в 10:00");
//! assert_eq!(t, "Anna, priem \"Terapevt\" - zavtra v 10:00");
//! assert_eq!(analyze(&t).encoding, SmsEncoding::Gsm7);
//! assert_eq!(transliterate("ЩИ и Щука"), "SHCHI i Shchuka");
//! ```

/// The Latin spelling of one lowercase Russian letter, or `None` for other characters.
fn lower_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' => "g",
        'д' => "d",
        'е' | 'ё' | 'э' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' => "i",
        'й' | 'ы' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ъ' | 'ь' => "",
        'ю' => "yu",
        'я' => "ya",
        _ => return None,
    })
}

/// ASCII stand-ins for typographic characters that are not in GSM-7.
fn punctuation(c: char) -> Option<&'static str> {
    Some(match c {
        '«' | '»' | '“' | '”' | '„' | '‟' => "\"",
        '‘' | '’' | '‚' | '‛' | '`' | '´' => "'",
        '—' | '–' | '‐' | '‑' | '―' | '−' => "-",
        '…' => "...",
        '№' => "N",
        '\u{a0}' | '\u{202f}' | '\u{2009}' | '\t' => " ",
        '\u{200b}' | '\u{feff}' | '\u{2060}' | '\u{ad}' => "",
        _ => return None,
    })
}

/// Transliterates Russian letters to Latin and replaces typographic characters with ASCII;
/// every other character is kept as it is.
///
/// A capital whose spelling has several letters is written in capitals inside an upper-case
/// word (`ЩИ` → `SHCHI`) and as a title otherwise (`Щука` → `Shchuka`).
pub fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev_upper = false;
    while let Some(c) = chars.next() {
        if let Some(latin) = lower_letter(c) {
            out.push_str(latin);
            prev_upper = false;
            continue;
        }
        let lower = c.to_lowercase().next().unwrap_or(c);
        if lower != c
            && let Some(latin) = lower_letter(lower)
        {
            let next = chars.peek().copied();
            let next_upper = next.is_some_and(char::is_uppercase);
            let next_lower = next.is_some_and(char::is_lowercase);
            let all_caps = next_upper || (prev_upper && !next_lower);
            let mut letters = latin.chars();
            if let Some(first) = letters.next() {
                out.push(first.to_ascii_uppercase());
                for l in letters {
                    out.push(if all_caps { l.to_ascii_uppercase() } else { l });
                }
            }
            prev_upper = true;
            continue;
        }
        prev_upper = c.is_uppercase();
        match punctuation(c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::sms::{SmsEncoding, analyze, is_gsm7};

    #[test]
    fn whole_alphabet_becomes_gsm7() {
        let lower = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя";
        let t = transliterate(lower);
        assert_eq!(t, "abvgdeezhziyklmnoprstufkhtschshshchyeyuya");
        assert!(is_gsm7(&t));
        assert!(is_gsm7(&transliterate(&lower.to_uppercase())));
    }

    #[test]
    fn case_follows_the_word() {
        assert_eq!(transliterate("Юлия"), "Yuliya");
        assert_eq!(transliterate("ЮЛИЯ"), "YULIYA");
        assert_eq!(transliterate("Ж"), "Zh");
        assert_eq!(transliterate("СТОП"), "STOP");
    }

    #[test]
    fn saves_segments_on_a_typical_reminder() {
        let text =
            "Анна Петровна, напоминаем: приём у терапевта завтра, 12.03, в 10:00, каб. 5. Придёте?";
        let before = analyze(text);
        let after = analyze(&transliterate(text));
        assert_eq!(before.encoding, SmsEncoding::Ucs2);
        assert_eq!(after.encoding, SmsEncoding::Gsm7);
        assert!(after.segments < before.segments);
    }

    #[test]
    fn keeps_non_russian_text() {
        assert_eq!(transliterate("Hello, 10:00 €"), "Hello, 10:00 €");
        assert_eq!(transliterate("Ελλάδα"), "Ελλάδα");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = transliterate(&s);
        }
    }
}
