//! E.164 phone numbers.
//!
//! [`Phone`] hides the parser behind a newtype so the backend can be swapped. The backend is
//! `rlibphonenumber`, a port of Google's libphonenumber; `tests/phone_corpus.rs` checks it against
//! libphonenumber's Python port on a labelled corpus of about 8,800 inputs
//! (`tests/data/phones/corpus.jsonl`).
//!
//! Input is read as libphonenumber reads it: labels before the number (`Тел:`, `tel:`), Unicode
//! dashes and spaces, zero-width and direction marks, full-width digits and trailing punctuation
//! are all understood. Two deliberate differences, both refusals:
//!
//! - an extension (`доб. 123`, `ext. 5`, `x5`) is refused with [`PhoneError::Extension`]: a
//!   message cannot reach an extension, and dropping it would send it to the switchboard;
//! - a letter after the number has started (`8 9l2 345 67 89`, `1-800-FLOWERS`) is refused with
//!   [`PhoneError::Letters`]: libphonenumber reads letters as keypad digits, so a typo such as
//!   `O` for `0` would quietly become another number.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, PhoneNumberType};
use serde::{Deserialize, Serialize};

/// A region (ISO 3166-1 alpha-2) used to read national numbers such as `8 (912) 345-67-89`.
///
/// ```
/// use messaging_core::Region;
/// assert_eq!(Region::RU.code(), "RU");
/// assert!("kz".parse::<Region>().is_ok());
/// assert!("XX".parse::<Region>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    id: rlibphonenumber::Region,
    code: [u8; 2],
}

impl Region {
    /// Russia, the default region.
    pub const RU: Region = Region::new(rlibphonenumber::Region::RU);
    /// Kazakhstan (shares the +7 country code with Russia).
    pub const KZ: Region = Region::new(rlibphonenumber::Region::KZ);

    const fn new(id: rlibphonenumber::Region) -> Region {
        // The backend's region discriminants are the two ASCII letters of the code.
        let v = id as u16;
        Region {
            id,
            code: [(v >> 8) as u8, v as u8],
        }
    }

    /// The two-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("ZZ")
    }
}

impl Default for Region {
    fn default() -> Self {
        Region::RU
    }
}

impl FromStr for Region {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || PhoneError::UnknownRegion(s.to_owned());
        let id = rlibphonenumber::Region::from_code(s.trim()).map_err(|_| unknown())?;
        // Any two letters make a backend region; only those with numbering metadata are regions.
        if id == rlibphonenumber::Region::World
            || PHONE_NUMBER_UTIL
                .get_country_code_for_region(id)
                .is_none_or(|cc| cc == 0)
        {
            return Err(unknown());
        }
        Ok(Region::new(id))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.code())
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// The input holds no digits at all.
    #[error("no phone number in {0:?}")]
    Empty(String),
    /// The input could not be read as a phone number.
    #[error("cannot read {input:?} as a phone number: {reason}")]
    Unparsable {
        /// What was given.
        input: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The input reads as a number, but no such number can exist (wrong length, unassigned range).
    #[error("{input:?} is not a valid phone number ({e164})")]
    Invalid {
        /// What was given.
        input: String,
        /// The E.164 form it was read as.
        e164: String,
    },
    /// The number carries an extension (`доб. 123`, `ext. 5`, `x5`): a message cannot reach an
    /// extension, so the number is refused rather than sent to the switchboard.
    #[error("{input:?} has an extension ({extension}); give the number without it ({e164})")]
    Extension {
        /// What was given.
        input: String,
        /// The number without its extension, in E.164 form.
        e164: String,
        /// The extension.
        extension: String,
    },
    /// A letter follows the start of the number (`8 9l2 …`, `1-800-FLOWERS`): letters would be
    /// read as keypad digits, so a typo could become another number.
    #[error("{0:?} has letters inside the number")]
    Letters(String),
    /// The region code is not known.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
}

/// A valid phone number in E.164 form (`+79123456789`).
///
/// ```
/// use messaging_core::Phone;
/// let p = Phone::parse("8 (912) 345-67-89").unwrap();
/// assert_eq!(p.as_str(), "+79123456789");
/// assert_eq!(Phone::parse("8 800 555-35-35").unwrap().as_str(), "+78005553535");
/// assert_eq!(Phone::parse("+49 89 2970906").unwrap().as_str(), "+49892970906");
/// assert_eq!(Phone::parse("Тел: 8 903 600–91–96.").unwrap().as_str(), "+79036009196");
/// assert!(Phone::parse("12345").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses national or international input with the default region (RU).
    pub fn parse(input: &str) -> Result<Phone, PhoneError> {
        Phone::parse_in(input, Region::default())
    }

    /// Parses national or international input, reading national numbers in `region`.
    pub fn parse_in(input: &str, region: Region) -> Result<Phone, PhoneError> {
        // Where the number starts: the first digit (of any script) or plus sign. Anything before
        // it is a label (`Тел:`, `tel:`) or a mark, and libphonenumber skips it.
        let Some(start) = input.find(|c: char| c.is_numeric() || c == '+' || c == '\u{ff0b}')
        else {
            return Err(PhoneError::Empty(input.to_owned()));
        };
        if !input[start..].chars().any(char::is_numeric) {
            return Err(PhoneError::Empty(input.to_owned()));
        }
        let parsed = PHONE_NUMBER_UTIL
            .parse(input, Some(region.id))
            .map_err(|e| PhoneError::Unparsable {
                input: input.to_owned(),
                reason: e.to_string(),
            })?;
        let e164 = || PHONE_NUMBER_UTIL.format(&parsed, PhoneNumberFormat::E164);
        if let Some(extension) = parsed.extension.as_deref().filter(|x| !x.is_empty()) {
            return Err(PhoneError::Extension {
                input: input.to_owned(),
                e164: e164().into_owned(),
                extension: extension.to_owned(),
            });
        }
        if input[start..].chars().any(char::is_alphabetic) {
            return Err(PhoneError::Letters(input.to_owned()));
        }
        if !PHONE_NUMBER_UTIL.is_valid_number(&parsed) {
            return Err(PhoneError::Invalid {
                input: input.to_owned(),
                e164: e164().into_owned(),
            });
        }
        Ok(Phone(e164().into_owned()))
    }

    /// The E.164 form, with the leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`, as WhatsApp ids and most SMS providers write them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// Whether the number is a mobile number (or one that may be mobile), so that an SMS can reach it.
    pub fn is_mobile(&self) -> bool {
        PHONE_NUMBER_UTIL.parse(&self.0, None).is_ok_and(|n| {
            matches!(
                PHONE_NUMBER_UTIL.get_number_type(&n),
                PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile
            )
        })
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.0)
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Phone {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phone::parse(s)
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Phone::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_trunk_eight_keeps_every_digit() {
        for (input, want) in [
            ("8 800 555-35-35", "+78005553535"),
            ("8 (812) 123-45-67", "+78121234567"),
            ("8 (912) 345-67-89", "+79123456789"),
            ("+7 912 345 67 89", "+79123456789"),
            ("79123456789", "+79123456789"),
            ("9123456789", "+79123456789"),
            ("+7 (812) 123-45-67", "+78121234567"),
            ("88005553535", "+78005553535"),
            ("+78121234567", "+78121234567"),
            ("+7 800 555 35 35", "+78005553535"),
            ("8 (495) 123-45-67", "+74951234567"),
        ] {
            assert_eq!(Phone::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn other_regions_and_international() {
        assert_eq!(
            Phone::parse("+44 7911 123456").unwrap().as_str(),
            "+447911123456"
        );
        let kz: Region = "KZ".parse().unwrap();
        assert_eq!(
            Phone::parse_in("8 701 123 45 67", kz).unwrap().as_str(),
            "+77011234567"
        );
        let by: Region = "BY".parse().unwrap();
        assert_eq!(
            Phone::parse_in("8 029 123-45-67", by).unwrap().as_str(),
            "+375291234567",
            "Belarus keeps its own country code"
        );
        let de: Region = "de".parse().unwrap();
        assert_eq!(
            Phone::parse_in("030 1234567", de).unwrap().as_str(),
            "+49301234567"
        );
    }

    #[test]
    fn invalid_input_is_a_typed_error() {
        assert!(matches!(Phone::parse(""), Err(PhoneError::Empty(_))));
        assert!(matches!(Phone::parse("abc"), Err(PhoneError::Empty(_))));
        assert!(matches!(
            Phone::parse("123"),
            Err(PhoneError::Invalid { .. } | PhoneError::Unparsable { .. })
        ));
        assert!(matches!(
            Phone::parse("tel:+7;phone-context=x"),
            Err(PhoneError::Unparsable { .. })
        ));
        assert!(matches!(
            "XX".parse::<Region>(),
            Err(PhoneError::UnknownRegion(_))
        ));
    }

    #[test]
    fn foreign_numbers_keep_a_leading_eight() {
        for (input, want) in [
            ("+49 89 2970906", "+49892970906"),
            ("+86 871 6345 6789", "+8687163456789"),
            ("+1 888 452 1505", "+18884521505"),
            ("8 10 49 89 2970906", "+49892970906"),
        ] {
            assert_eq!(Phone::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn pasted_forms_are_read() {
        for input in [
            "8 903 600\u{2013}91\u{2013}96",
            "8 903 600\u{2011}91\u{2011}96",
            "+7\u{a0}903\u{a0}600\u{2012}91\u{2212}96",
            "+7 903 600-91-96.",
            "+7 903 600-91-96;",
            "\u{200e}+7 903 600 91 96\u{200f}",
            "\u{202a}+7 903 600-91-96\u{202c}",
            "+7 903\u{200b}600 91 96",
            "\u{ff18} \u{ff19}\u{ff10}\u{ff13} \u{ff16}\u{ff10}\u{ff10} \u{ff19}\u{ff11} \u{ff19}\u{ff16}",
            "\u{ff0b}\u{ff17}\u{ff19}\u{ff10}\u{ff13}\u{ff16}\u{ff10}\u{ff10}\u{ff19}\u{ff11}\u{ff19}\u{ff16}",
            "Тел: 8 (903) 600-91-96",
            "tel:+79036009196",
            "Tel. +7-903-600-91-96",
        ] {
            assert_eq!(
                Phone::parse(input).map(|p| p.as_str().to_owned()),
                Ok("+79036009196".to_owned()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn extensions_and_letters_are_refused() {
        assert!(matches!(
            Phone::parse("+7 495 123-45-67 доб. 123"),
            Err(PhoneError::Extension { e164, extension, .. }) if e164 == "+74951234567" && extension == "123"
        ));
        assert!(matches!(
            Phone::parse("+1 800 555 0199 ext. 5"),
            Err(PhoneError::Extension { .. })
        ));
        assert!(matches!(
            Phone::parse("+1 800 FLOWERS"),
            Err(PhoneError::Letters(_))
        ));
        assert!(matches!(
            Phone::parse("1-800-FLOWERS"),
            Err(PhoneError::Letters(_))
        ));
        assert!(matches!(
            Phone::parse("+7 9l2 345 67 89"),
            Err(PhoneError::Letters(_) | PhoneError::Unparsable { .. })
        ));
        assert!(matches!(
            Phone::parse("\u{ff11}\u{ff12}"),
            Err(PhoneError::Invalid { .. } | PhoneError::Unparsable { .. })
        ));
    }

    #[test]
    fn mobile_detection() {
        assert!(Phone::parse("+79123456789").unwrap().is_mobile());
        assert!(!Phone::parse("+78121234567").unwrap().is_mobile());
    }

    #[test]
    fn serde_validates() {
        let p: Phone = serde_json::from_str("\"8 912 345 67 89\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+79123456789\"");
        assert!(serde_json::from_str::<Phone>("\"42\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Phone::parse(&s);
        }

        #[test]
        fn plus_seven_eight_numbers_keep_every_digit(n in 8_000_000_000u64..8_999_999_999u64) {
            for input in [format!("+7{n}"), format!("8{n}"), format!("+7 ({}) {}", n / 10_000_000, n % 10_000_000)] {
                if let Ok(p) = Phone::parse(&input) {
                    proptest::prop_assert_eq!(p.as_str(), format!("+7{n}"));
                }
            }
        }

        #[test]
        fn valid_numbers_round_trip(n in 9_000_000_000u64..9_999_999_999u64) {
            if let Ok(p) = Phone::parse(&format!("8{n}")) {
                proptest::prop_assert_eq!(Phone::parse(p.as_str()).unwrap(), p.clone());
                proptest::prop_assert_eq!(p.as_str(), format!("+7{n}"));
            }
        }
    }
}
