//! Signed, expiring deep-link tokens.
//!
//! A token is base64url (no padding) of `flags | expires (u32 BE, Unix seconds) | nonce (3 bytes)
//! | contact id | HMAC-SHA256 (first 10 bytes)`. At most 48 bytes, so at most 64 characters of
//! `A-Za-z0-9_-`: it fits Telegram's `start` payload (1..=64 of those characters) and Max's.
//! A contact id of up to 30 bytes fits as is; a canonical lowercase UUID (36 characters) is
//! packed into 16 bytes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use messaging_core::ContactId;
use messaging_core::webhook::hmac_sha256;
use messaging_core::{Clock, chrono_dur};

/// The longest token text (Telegram's start payload limit).
pub const MAX_TOKEN_LEN: usize = 64;

const VERSION: u8 = 0x10;
const FLAG_UUID: u8 = 0x01;
const HEADER_LEN: usize = 1 + 4 + 3;
const MAC_LEN: usize = 10;
const MAX_BYTES: usize = MAX_TOKEN_LEN / 4 * 3;
const MAX_CONTACT_BYTES: usize = MAX_BYTES - HEADER_LEN - MAC_LEN;
// Keeps these MACs from ever being valid for another use of the same key.
const DOMAIN: &[u8] = b"messaging-core deep-link v1\0";
const MIN_KEY_LEN: usize = 16;

/// Why a token was not issued or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The signing key is shorter than 16 bytes.
    #[error("the deep-link key must be at least {min} bytes")]
    KeyTooShort {
        /// The least length.
        min: usize,
    },
    /// The contact id does not fit in a token.
    #[error("contact id of {len} bytes does not fit a deep-link token (at most {max}, or a UUID)")]
    ContactIdTooLong {
        /// Its length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// The contact id is empty.
    #[error("empty contact id")]
    EmptyContactId,
    /// The expiry is past the year 2106 or before 1970.
    #[error("token expiry out of range")]
    ExpiryOutOfRange,
    /// The text is not a token of ours.
    #[error("not a deep-link token: {0}")]
    Malformed(&'static str),
    /// The signature does not match: forged or altered.
    #[error("deep-link token signature does not match")]
    BadSignature,
    /// The token expired.
    #[error("deep-link token expired at {expired_at}")]
    Expired {
        /// When.
        expired_at: DateTime<Utc>,
    },
    /// The token was used already.
    #[error("deep-link token was used already")]
    AlreadyUsed,
}

/// The HMAC key for deep-link tokens. Never shown by `Debug`.
#[derive(Clone)]
pub struct DeepLinkKey(Arc<[u8]>);

impl DeepLinkKey {
    /// A key of at least 16 bytes (use 32 random bytes).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, TokenError> {
        let b = bytes.as_ref();
        if b.len() < MIN_KEY_LEN {
            return Err(TokenError::KeyTooShort { min: MIN_KEY_LEN });
        }
        Ok(DeepLinkKey(Arc::from(b)))
    }
}

impl fmt::Debug for DeepLinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeepLinkKey([redacted])")
    }
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The contact it was issued for.
    pub contact: ContactId,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
    /// A stable id of this token (hex of its MAC) for one-time use.
    pub token_id: String,
}

/// An issued token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeepLinkToken {
    /// The text to put in `?start=`.
    pub token: String,
    /// What it says.
    pub claims: TokenClaims,
}

impl fmt::Display for DeepLinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token)
    }
}

/// Issues and verifies deep-link tokens (HMAC-SHA256, expiring).
///
/// Verification checks the MAC (in constant time) and the expiry; one-time use is the job of
/// a [`UsedTokenStore`](super::UsedTokenStore), which the [`Linker`](super::Linker) consults.
///
/// ```
/// use std::sync::Arc;
/// use messaging_conversations::identity::{DeepLinkKey, DeepLinkSigner, TokenError, telegram_start_url};
/// use messaging_core::{ContactId, ManualClock};
///
/// let clock = ManualClock::at_unix(1_800_000_000);
/// let signer = DeepLinkSigner::new(DeepLinkKey::new(b"0123456789abcdef0123").unwrap(), Arc::new(clock));
/// let t = signer.issue(&ContactId::new("patient-7")).unwrap();
/// assert!(t.token.len() <= 64);
/// assert_eq!(signer.verify(&t.token).unwrap().contact.as_str(), "patient-7");
/// assert_eq!(signer.verify("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Err(TokenError::BadSignature));
/// assert!(telegram_start_url("@clinic_bot", &t.token).starts_with("https://t.me/clinic_bot?start="));
/// ```
pub struct DeepLinkSigner {
    key: DeepLinkKey,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    nonce: AtomicU32,
}

impl fmt::Debug for DeepLinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeepLinkSigner")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DeepLinkSigner {
    /// The default lifetime of a token: 30 days (a migration campaign).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

    /// A signer with the default lifetime.
    pub fn new(key: DeepLinkKey, clock: Arc<dyn Clock>) -> Self {
        // The nonce only makes tokens issued in one second differ; the MAC gives authenticity.
        let seed = clock.now().timestamp_subsec_nanos();
        DeepLinkSigner {
            key,
            clock,
            ttl: Self::DEFAULT_TTL,
            nonce: AtomicU32::new(seed),
        }
    }

    /// Sets the lifetime of issued tokens.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Issues a token for `contact`, valid for the configured lifetime.
    pub fn issue(&self, contact: &ContactId) -> Result<DeepLinkToken, TokenError> {
        let expires_at = self.clock.now() + chrono_dur(self.ttl);
        self.issue_until(contact, expires_at)
    }

    /// Issues a token for `contact` valid until `expires_at` (whole seconds).
    pub fn issue_until(
        &self,
        contact: &ContactId,
        expires_at: DateTime<Utc>,
    ) -> Result<DeepLinkToken, TokenError> {
        let id = contact.as_str();
        if id.is_empty() {
            return Err(TokenError::EmptyContactId);
        }
        let exp =
            u32::try_from(expires_at.timestamp()).map_err(|_| TokenError::ExpiryOutOfRange)?;
        let (flags, contact_bytes) = match pack_uuid(id) {
            Some(b) => (VERSION | FLAG_UUID, b.to_vec()),
            None if id.len() <= MAX_CONTACT_BYTES => (VERSION, id.as_bytes().to_vec()),
            None => {
                return Err(TokenError::ContactIdTooLong {
                    len: id.len(),
                    max: MAX_CONTACT_BYTES,
                });
            }
        };
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut bytes = Vec::with_capacity(MAX_BYTES);
        bytes.push(flags);
        bytes.extend_from_slice(&exp.to_be_bytes());
        bytes.extend_from_slice(&nonce[1..]);
        bytes.extend_from_slice(&contact_bytes);
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        let token = URL_SAFE_NO_PAD.encode(&bytes);
        debug_assert!(token.len() <= MAX_TOKEN_LEN);
        Ok(DeepLinkToken {
            token,
            claims: TokenClaims {
                contact: contact.clone(),
                expires_at: from_unix(exp),
                token_id: hex::encode(mac),
            },
        })
    }

    /// Checks a token's signature and expiry (not whether it was used).
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("wrong length"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        if bytes.len() <= HEADER_LEN + MAC_LEN {
            return Err(TokenError::Malformed("too short"));
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let expected = self.mac(body);
        // Constant time: a forger learns nothing from how fast a guess is refused.
        if !bool::from(expected.ct_eq(mac)) {
            return Err(TokenError::BadSignature);
        }
        let flags = body[0];
        if flags & 0xF0 != VERSION {
            return Err(TokenError::Malformed("unknown version"));
        }
        let exp = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
        let contact_bytes = &body[HEADER_LEN..];
        let contact = if flags & FLAG_UUID != 0 {
            unpack_uuid(contact_bytes).ok_or(TokenError::Malformed("bad UUID"))?
        } else {
            std::str::from_utf8(contact_bytes)
                .map_err(|_| TokenError::Malformed("contact id is not UTF-8"))?
                .to_owned()
        };
        let expires_at = from_unix(exp);
        if self.clock.now() >= expires_at {
            return Err(TokenError::Expired {
                expired_at: expires_at,
            });
        }
        Ok(TokenClaims {
            contact: ContactId::new(contact),
            expires_at,
            token_id: hex::encode(mac),
        })
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut input = Vec::with_capacity(DOMAIN.len() + body.len());
        input.extend_from_slice(DOMAIN);
        input.extend_from_slice(body);
        let full = hmac_sha256(&self.key.0, &input);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

fn from_unix(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
}

/// 16 bytes of a canonical lowercase UUID (`8-4-4-4-12` hex digits), if `s` is one.
fn pack_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hexdigits: String = s.chars().filter(|&c| c != '-').collect();
    if hexdigits.bytes().any(|c| c.is_ascii_uppercase()) {
        // Upper case would not round-trip; keep such ids as text.
        return None;
    }
    let v = hex::decode(hexdigits).ok()?;
    v.try_into().ok()
}

fn unpack_uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let h = hex::encode(b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn bot_name(bot: &str) -> &str {
    let b = bot.trim();
    b.strip_prefix('@').unwrap_or(b)
}

/// `https://t.me/<bot>?start=<token>` (a leading `@` of the bot name is dropped).
///
/// ```
/// assert_eq!(
///     messaging_conversations::identity::telegram_start_url("@clinic_bot", "abc"),
///     "https://t.me/clinic_bot?start=abc"
/// );
/// ```
pub fn telegram_start_url(bot: &str, token: &str) -> String {
    format!("https://t.me/{}?start={token}", bot_name(bot))
}

/// `https://max.ru/<bot>?start=<token>` (a leading `@` of the bot name is dropped).
///
/// ```
/// assert_eq!(
///     messaging_conversations::identity::max_start_url("clinic_bot", "abc"),
///     "https://max.ru/clinic_bot?start=abc"
/// );
/// ```
pub fn max_start_url(bot: &str, token: &str) -> String {
    format!("https://max.ru/{}?start={token}", bot_name(bot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ManualClock;

    fn signer(clock: &ManualClock) -> DeepLinkSigner {
        DeepLinkSigner::new(
            DeepLinkKey::new(b"test-key-0123456789abcdef").unwrap(),
            Arc::new(clock.clone()),
        )
    }

    #[test]
    fn uuid_contact_ids_are_packed_and_round_trip() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let s = signer(&clock);
        let id = ContactId::new("123e4567-e89b-12d3-a456-426614174000");
        let t = s.issue(&id).unwrap();
        assert!(t.token.len() <= MAX_TOKEN_LEN, "{}", t.token.len());
        assert_eq!(s.verify(&t.token).unwrap().contact, id);
        // Upper-case UUIDs are not canonical: 36 bytes of text do not fit.
        assert!(matches!(
            s.issue(&ContactId::new("123E4567-E89B-12D3-A456-426614174000")),
            Err(TokenError::ContactIdTooLong { len: 36, max: 30 })
        ));
    }

    #[test]
    fn longest_text_id_fits_exactly_64_chars() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let s = signer(&clock);
        let id = ContactId::new("x".repeat(MAX_CONTACT_BYTES));
        let t = s.issue(&id).unwrap();
        assert_eq!(t.token.len(), 64);
        assert!(
            t.token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_eq!(s.verify(&t.token).unwrap().contact, id);
    }
}
