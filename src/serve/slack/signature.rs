//! Slack's request signature, version `v0`: `X-Slack-Signature` is `v0=` followed by the hex
//! HMAC-SHA256, keyed with the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw
//! body}`. A request is genuine when the signature matches (compared in constant time) and
//! its timestamp is within five minutes of now, either way (so a captured request cannot be
//! replayed later, and a clock running ahead is not an opening either).
//!
//! The verifier takes "now" as an argument rather than reading the clock, so the window's
//! edges are tested exactly; the handlers pass the service's clock. It never logs and its
//! errors never contain the secret or the offered signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::embedding::ApiKey;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header carrying the signed Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Largest distance between the signed timestamp and now, seconds (Slack's own advice).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request was refused; each is a metrics label, none carries request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No signature or no timestamp header.
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    MissingHeaders,
    /// The timestamp is not a whole number of seconds.
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    BadTimestamp,
    /// The timestamp is more than five minutes from now.
    #[error("X-Slack-Request-Timestamp is more than 5 minutes from now")]
    Stale,
    /// The signature does not match the body.
    #[error("X-Slack-Signature does not match the request")]
    BadSignature,
}

impl Rejection {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MissingHeaders => "missing_headers",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::Stale => "stale",
            Rejection::BadSignature => "bad_signature",
        }
    }
}

/// Checks signatures with one signing secret.
#[derive(Clone)]
pub struct Verifier {
    secret: ApiKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `secret` (the app's signing secret, not its bot token).
    pub fn new(secret: ApiKey) -> Self {
        Verifier { secret }
    }

    /// `v0=` and the hex signature Slack would send for `body` signed at `timestamp`
    /// (`None` only if HMAC refused the key, which it never does for any length).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> Option<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()).ok()?;
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(3 + 2 * digest.len());
        out.push_str("v0=");
        for byte in digest {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Some(out)
    }

    /// Accepts the request when both headers are present, the timestamp is within
    /// [`MAX_SKEW_SECS`] of `now` (Unix seconds; exactly 300 s away is still accepted) and the
    /// signature matches `body` byte for byte. Returns the signed timestamp.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<i64, Rejection> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(Rejection::MissingHeaders);
        };
        let signed_at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Rejection::BadTimestamp)?;
        if now.abs_diff(signed_at) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(Rejection::Stale);
        }
        let expected = self.sign(timestamp, body).ok_or(Rejection::BadSignature)?;
        // Lengths are public (always 67 for v0); the content is compared in constant time.
        if bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes())) {
            Ok(signed_at)
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Slack's "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn verifier() -> Verifier {
        Verifier::new(ApiKey::new(SECRET))
    }

    #[test]
    fn slacks_documented_example_verifies() {
        let v = verifier();
        assert_eq!(
            v.sign(TIMESTAMP, BODY.as_bytes()).as_deref(),
            Some(SIGNATURE)
        );
        assert_eq!(
            v.verify(
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                1_531_420_618
            ),
            Ok(1_531_420_618)
        );
    }

    #[test]
    fn the_window_is_five_minutes_either_way_inclusive() {
        let v = verifier();
        let check = |now| v.verify(Some(TIMESTAMP), Some(SIGNATURE), BODY.as_bytes(), now);
        let signed = 1_531_420_618;
        assert!(check(signed + 300).is_ok());
        assert!(check(signed - 300).is_ok());
        assert_eq!(check(signed + 301), Err(Rejection::Stale));
        assert_eq!(check(signed - 301), Err(Rejection::Stale));
        assert_eq!(check(i64::MAX), Err(Rejection::Stale));
        assert_eq!(check(i64::MIN), Err(Rejection::Stale));
    }

    #[test]
    fn anything_altered_is_refused() {
        let v = verifier();
        let now = 1_531_420_618;
        let body = BODY.as_bytes();
        assert_eq!(
            v.verify(None, Some(SIGNATURE), body, now),
            Err(Rejection::MissingHeaders)
        );
        assert_eq!(
            v.verify(Some(TIMESTAMP), None, body, now),
            Err(Rejection::MissingHeaders)
        );
        assert_eq!(
            v.verify(Some("yesterday"), Some(SIGNATURE), body, now),
            Err(Rejection::BadTimestamp)
        );
        let tampered = BODY.replace("text=", "text=drop");
        assert_eq!(
            v.verify(Some(TIMESTAMP), Some(SIGNATURE), tampered.as_bytes(), now),
            Err(Rejection::BadSignature)
        );
        // The same body under another timestamp is another signature.
        assert_eq!(
            v.verify(Some("1531420619"), Some(SIGNATURE), body, now),
            Err(Rejection::BadSignature)
        );
        let upper = SIGNATURE.to_uppercase();
        assert_eq!(
            v.verify(Some(TIMESTAMP), Some(&upper), body, now),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            v.verify(Some(TIMESTAMP), Some(&SIGNATURE[..20]), body, now),
            Err(Rejection::BadSignature)
        );
        let other = Verifier::new(ApiKey::new("another-secret"));
        assert_eq!(
            other.verify(Some(TIMESTAMP), Some(SIGNATURE), body, now),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        assert!(!format!("{:?}", verifier()).contains(SECRET));
    }
}
