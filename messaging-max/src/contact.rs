//! Shared contacts: reading the phone from `vcf_info` and deciding whether the contact is the
//! sender's own.
//!
//! A Max `contact` attachment (sent when the person presses a `request_contact` button) looks like:
//!
//! ```json
//! {"type": "contact",
//!  "payload": {"vcf_info": "BEGIN:VCARD\r\nTEL;TYPE=cell:79990000000\r\nEND:VCARD\r\n",
//!              "hash": "<hex>",
//!              "max_info": {"user_id": 10001, "first_name": "Ivan"}}}
//! ```
//!
//! # What is checked
//!
//! [`ContactCheck::is_own`] is `true` only when **all** of these hold:
//!
//! 1. a hash key is configured (see below) and `payload.hash`, read as hex, equals
//!    `HMAC-SHA256(key, vcf_info bytes exactly as received)`; compared in constant time;
//! 2. when `max_info.user_id` is present, it equals the `user_id` of the message's sender;
//! 3. a phone number could be read from a `TEL` line of `vcf_info` as a valid E.164 number.
//!
//! Max documents `hash` as "a hash of the vCard used to check that the user shared the number
//! bound to their own account"; the exact formula is not public (see `max.md`). The one known
//! implementation keys the HMAC with the **bot token**, which is what
//! [`MaxBot::webhook_handler`](crate::MaxBot::webhook_handler) and
//! [`MaxBot::poller`](crate::MaxBot::poller) use by default; a different key can be set with
//! [`UpdateParser::contact_hash_key`](crate::UpdateParser::contact_hash_key). Without a key no
//! contact is ever reported as the sender's own: the phone is still reported, with
//! `contact_is_own = false`.

use messaging_core::Phone;
use messaging_core::webhook::verify_hmac_sha256_hex;

use crate::wire::ContactPayloadWire;

/// The result of checking a shared contact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContactCheck {
    /// The phone read from `vcf_info`, in E.164, if one could be read.
    pub phone: Option<Phone>,
    /// Whether `hash` matched `HMAC-SHA256(key, vcf_info)`; `None` when no key was configured or
    /// the payload had no hash.
    pub hash_valid: Option<bool>,
    /// Whether `max_info.user_id` equals the sender; `None` when `max_info.user_id` is absent.
    pub user_id_matches: Option<bool>,
    /// Whether the contact is the sender's own: a phone was read, the hash was checked and
    /// valid, and the user id (when present) matches.
    pub is_own: bool,
}

/// Checks a contact attachment's `payload` (as JSON) against the sender's user id.
///
/// ```
/// use messaging_max::check_contact;
/// let payload = serde_json::json!({
///     "vcf_info": "BEGIN:VCARD\r\nTEL;TYPE=cell:79123456789\r\nEND:VCARD\r\n",
///     "hash": messaging_core::webhook::hmac_sha256_hex(b"token", b"BEGIN:VCARD\r\nTEL;TYPE=cell:79123456789\r\nEND:VCARD\r\n"),
///     "max_info": {"user_id": 10001}
/// });
/// let c = check_contact(&payload, 10001, Some(b"token"));
/// assert_eq!(c.phone.unwrap().as_str(), "+79123456789");
/// assert!(c.is_own);
/// // A contact forwarded by someone else is not their own.
/// assert!(!check_contact(&payload, 10002, Some(b"token")).is_own);
/// // Without a key nothing is trusted.
/// assert!(!check_contact(&payload, 10001, None).is_own);
/// ```
pub fn check_contact(
    payload: &serde_json::Value,
    sender_user_id: i64,
    key: Option<&[u8]>,
) -> ContactCheck {
    let wire: ContactPayloadWire = serde_json::from_value(payload.clone()).unwrap_or_default();
    check_wire(&wire, sender_user_id, key)
}

pub(crate) fn check_wire(
    wire: &ContactPayloadWire,
    sender_user_id: i64,
    key: Option<&[u8]>,
) -> ContactCheck {
    let vcf = wire.vcf_info.as_deref().unwrap_or("");
    let phone = phone_from_vcard(vcf);
    let hash_valid = match (key, wire.hash.as_deref()) {
        (Some(k), Some(h)) if !vcf.is_empty() => Some(verify_contact_hash(k, vcf, h)),
        (Some(_), _) => Some(false),
        (None, _) => None,
    };
    let user_id_matches = wire
        .max_info
        .as_ref()
        .and_then(|u| u.user_id)
        .map(|id| id == sender_user_id);
    let is_own = phone.is_some() && hash_valid == Some(true) && user_id_matches != Some(false);
    ContactCheck {
        phone,
        hash_valid,
        user_id_matches,
        is_own,
    }
}

/// Whether `hash_hex` is the hex HMAC-SHA256 of `vcf_info` under `key`, compared in constant time.
///
/// ```
/// // The conformance fragment: key "secret".
/// let vcf = "BEGIN:VCARD\nTEL;TYPE=CELL:+1 (234) 567-890\nEND:VCARD";
/// let hash = "ee3d82750cc421d596d2bac3350e80c763406417768bbba9292ed95463139807";
/// assert!(messaging_max::verify_contact_hash(b"secret", vcf, hash));
/// assert!(!messaging_max::verify_contact_hash(b"other", vcf, hash));
/// ```
pub fn verify_contact_hash(key: &[u8], vcf_info: &str, hash_hex: &str) -> bool {
    verify_hmac_sha256_hex(key, vcf_info.as_bytes(), hash_hex)
}

/// The first phone number on a `TEL` line of a vCard that reads as a valid E.164 number.
///
/// Lenient about the forms seen in the wild: `TEL;TYPE=cell:7999...`, `TEL;CELL:+7...`,
/// `TEL:+7...`, `item1.TEL:...`, `TEL;VALUE=uri:tel:+7...`, with or without `+`, with `\r\n`
/// or `\n` line ends and folded lines.
///
/// ```
/// use messaging_max::phone_from_vcard;
/// let p = phone_from_vcard("BEGIN:VCARD\r\nTEL;CELL:8 (912) 345-67-89\r\nEND:VCARD").unwrap();
/// assert_eq!(p.as_str(), "+79123456789");
/// assert!(phone_from_vcard("BEGIN:VCARD\nFN:Ivan\nEND:VCARD").is_none());
/// ```
pub fn phone_from_vcard(vcf: &str) -> Option<Phone> {
    // Unfold continuation lines (RFC 6350 3.2): CRLF followed by a space or tab.
    let unfolded = vcf
        .replace("\r\n ", "")
        .replace("\r\n\t", "")
        .replace("\n ", "")
        .replace("\n\t", "");
    unfolded.lines().find_map(|line| {
        let line = line.trim();
        let (name_and_params, value) = line.split_once(':')?;
        let name = name_and_params.split(';').next()?;
        // Strip a group prefix ("item1.TEL").
        let name = name.rsplit('.').next().unwrap_or(name);
        if !name.eq_ignore_ascii_case("TEL") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix("tel:")
            .or_else(|| value.strip_prefix("TEL:"))
            .unwrap_or(value);
        read_phone(value)
    })
}

fn read_phone(value: &str) -> Option<Phone> {
    if let Ok(p) = Phone::parse(value) {
        return Some(p);
    }
    // International numbers written without '+' ("447911123456").
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if !value.trim_start().starts_with('+') && digits.len() > 10 {
        return Phone::parse(&format!("+{digits}")).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::webhook::hmac_sha256_hex;
    use serde_json::json;

    #[test]
    fn tel_variants() {
        for (vcf, want) in [
            (
                "BEGIN:VCARD\r\nVERSION:3.0\r\nTEL;TYPE=cell:79990000000\r\nFN:Ivan\r\nEND:VCARD\r\n",
                "+79990000000",
            ),
            (
                "BEGIN:VCARD\nTEL;CELL:+79123456789\nEND:VCARD",
                "+79123456789",
            ),
            ("TEL:+7 912 345-67-89", "+79123456789"),
            ("item1.TEL;type=CELL:+447911123456", "+447911123456"),
            ("tel;VALUE=uri:tel:+447911123456", "+447911123456"),
            ("TEL:447911123456", "+447911123456"),
            ("TEL:+7912345\r\n 6789", "+79123456789"),
            ("TEL:garbage\nTEL:+79123456789", "+79123456789"),
        ] {
            assert_eq!(
                phone_from_vcard(vcf)
                    .map(|p| p.as_str().to_owned())
                    .as_deref(),
                Some(want),
                "{vcf:?}"
            );
        }
        for vcf in [
            "",
            "TEL:",
            "TEL:123",
            "TELEX:+79123456789",
            "NOTE:TEL:+79123456789",
            "\u{0}:",
        ] {
            assert!(phone_from_vcard(vcf).is_none(), "{vcf:?}");
        }
    }

    fn payload(vcf: &str, key: &[u8], user: Option<i64>) -> serde_json::Value {
        let mut v = json!({"vcf_info": vcf, "hash": hmac_sha256_hex(key, vcf.as_bytes())});
        if let Some(u) = user {
            v["max_info"] = json!({"user_id": u});
        }
        v
    }

    #[test]
    fn own_only_when_every_check_passes() {
        let vcf = "BEGIN:VCARD\r\nTEL;TYPE=cell:79123456789\r\nEND:VCARD\r\n";
        let key = b"tok";
        let ok = check_contact(&payload(vcf, key, Some(5)), 5, Some(key));
        assert!(ok.is_own);
        assert_eq!(ok.hash_valid, Some(true));
        assert_eq!(ok.user_id_matches, Some(true));

        // No max_info: the hash alone decides.
        assert!(check_contact(&payload(vcf, key, None), 5, Some(key)).is_own);
        // Someone else's contact.
        let other = check_contact(&payload(vcf, key, Some(6)), 5, Some(key));
        assert!(!other.is_own);
        assert_eq!(other.user_id_matches, Some(false));
        assert!(other.phone.is_some());
        // Wrong key, no key, tampered vCard, missing hash.
        assert!(!check_contact(&payload(vcf, b"bad", Some(5)), 5, Some(key)).is_own);
        let none = check_contact(&payload(vcf, key, Some(5)), 5, None);
        assert!(!none.is_own);
        assert_eq!(none.hash_valid, None);
        let mut tampered = payload(vcf, key, Some(5));
        tampered["vcf_info"] = json!(vcf.replace("7912", "7913"));
        assert!(!check_contact(&tampered, 5, Some(key)).is_own);
        let mut no_hash = payload(vcf, key, Some(5));
        no_hash.as_object_mut().unwrap().remove("hash");
        let c = check_contact(&no_hash, 5, Some(key));
        assert!(!c.is_own);
        assert_eq!(c.hash_valid, Some(false));
        // Garbage payloads are not own and do not panic.
        assert!(!check_contact(&json!(42), 5, Some(key)).is_own);
        assert!(!check_contact(&json!({"hash": "zz"}), 5, Some(key)).is_own);
    }

    #[test]
    fn no_phone_means_not_own() {
        let vcf = "BEGIN:VCARD\nTEL;TYPE=CELL:+1 (234) 567-890\nEND:VCARD";
        let c = check_contact(&payload(vcf, b"secret", Some(7)), 7, Some(b"secret"));
        assert_eq!(c.hash_valid, Some(true));
        assert!(c.phone.is_none());
        assert!(!c.is_own);
    }
}
