//! E.164 phone numbers.
//!
//! [`Phone`] hides the `phonenumber` crate behind a newtype so the backend can be swapped, and
//! works around a known trap of `phonenumber` 0.3.x: a Russian number written with the trunk
//! prefix 8 whose national part also starts with 8 (`8 800 555-35-35`) loses a digit. Such input
//! is rewritten to its international form before parsing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A region (ISO 3166-1 alpha-2) used to read national numbers such as `8 (912) 345-67-89`.
///
/// ```
/// use messaging_core::Region;
/// assert_eq!(Region::RU.code(), "RU");
/// assert!("kz".parse::<Region>().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// Russia, the default region.
    pub const RU: Region = Region(phonenumber::country::Id::RU);
    /// Kazakhstan (shares the +7 country code with Russia).
    pub const KZ: Region = Region(phonenumber::country::Id::KZ);

    /// The two-letter code.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }

    /// Whether national numbers of this region belong to the +7 zone (Russia, Kazakhstan),
    /// written with the trunk prefix 8.
    fn is_plus_seven(self) -> bool {
        use phonenumber::country::Id;
        matches!(self.0, Id::RU | Id::KZ)
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
        phonenumber::country::Id::from_str(&s.trim().to_ascii_uppercase())
            .map(Region)
            .map_err(|_| PhoneError::UnknownRegion(s.to_owned()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
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
        let trimmed = input.trim();
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(PhoneError::Empty(input.to_owned()));
        }
        // Reject anything that is not a phone-number character before handing it to the parser:
        // the parser is lenient (and historically panicked on crafted RFC 3966 input).
        if trimmed.len() > 64
            || !trimmed
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().\u{a0}/".contains(c))
        {
            return Err(PhoneError::Unparsable {
                input: input.to_owned(),
                reason: "only digits, spaces, '+', '-', '(', ')', '.' and '/' are allowed".into(),
            });
        }
        // The +7 zone is handled apart: phonenumber 0.3.x strips a leading 8 from the national
        // number even after "+7", so "+7 812 ..." and "8 800 ..." lose digits. We work out the
        // ten national digits ourselves and only let the crate validate them.
        let international = trimmed.starts_with('+');
        let plus_seven_national = if international {
            (digits.len() == 11 && digits.starts_with('7')).then(|| &digits[1..])
        } else if region.is_plus_seven() {
            match digits.len() {
                11 if digits.starts_with('8') || digits.starts_with('7') => Some(&digits[1..]),
                10 => Some(&digits[..]),
                _ => None,
            }
        } else {
            None
        };
        if let Some(national) = plus_seven_national {
            let e164 = format!("+7{national}");
            return match parse_plus_seven(national) {
                Some(n) if n.is_valid() => Ok(Phone(e164)),
                _ => Err(PhoneError::Invalid {
                    input: input.to_owned(),
                    e164,
                }),
            };
        }
        let parsed =
            phonenumber::parse(Some(region.0), trimmed).map_err(|e| PhoneError::Unparsable {
                input: input.to_owned(),
                reason: e.to_string(),
            })?;
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if !parsed.is_valid() {
            return Err(PhoneError::Invalid {
                input: input.to_owned(),
                e164,
            });
        }
        Ok(Phone(e164))
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
        use phonenumber::Type;
        let parsed = match self.0.strip_prefix("+7") {
            Some(national) => parse_plus_seven(national),
            None => phonenumber::parse(None, &self.0).ok(),
        };
        parsed.is_some_and(|n| {
            matches!(
                n.number_type(&phonenumber::metadata::DATABASE),
                Type::Mobile | Type::FixedLineOrMobile
            )
        })
    }
}

/// Reads a +7 number from its ten national digits, making sure the crate kept every digit.
///
/// phonenumber 0.3.x strips up to two leading 8s as if they were the trunk prefix, even after
/// "+7". When the plain form loses digits, the same number with 8s put in front reads right;
/// a result is used only if its national number is exactly `national`, so a fixed crate keeps
/// working.
fn parse_plus_seven(national: &str) -> Option<phonenumber::PhoneNumber> {
    if national.len() != 10 || !national.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    (0..=3)
        .map(|k| format!("+7{}{national}", "8".repeat(k)))
        .filter_map(|candidate| phonenumber::parse(None, &candidate).ok())
        .find(|n| n.code().value() == 7 && n.national().value().to_string() == national)
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
