//! Auth: with `serve.token` set, every `/api` request must carry `Authorization: Bearer
//! <token>` or the dashboard's session cookie, and every dashboard page needs the cookie
//! (without it the page redirects to `/login`). Comparisons take the same time whatever the
//! guess, and neither the expected nor the offered token is ever logged or echoed.
//!
//! The session cookie ([`SESSION_COOKIE`]) holds hex HMAC-SHA256 of the fixed message
//! [`SESSION_MESSAGE`] keyed by the token: stateless (it survives restarts and needs no
//! session table), unguessable without the token, and invalid as soon as the token changes.
//! It is `Secure; HttpOnly; SameSite=Strict`: scripts cannot read it and other sites cannot
//! make the browser send it, which is why the API may accept it without a CSRF token and why
//! no CORS layer is installed.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::AppState;
use super::api::ApiError;

/// Name of the dashboard's login cookie.
pub const SESSION_COOKIE: &str = "segscope_session";
/// What the session cookie's HMAC signs.
pub const SESSION_MESSAGE: &[u8] = b"segscope-dashboard-session";

/// The session cookie's value for `token`: hex HMAC-SHA256(token, [`SESSION_MESSAGE`]).
pub fn session_value(token: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail; fall back to an empty MAC anyway
    // rather than panic (an empty value never matches a real cookie).
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(SESSION_MESSAGE);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether `offered` is the token (constant time).
pub fn token_matches(state: &AppState, offered: &str) -> bool {
    bool::from(
        offered
            .as_bytes()
            .ct_eq(state.settings.serve.token.expose().as_bytes()),
    )
}

/// Whether the request may pass: no token configured, or a valid session cookie.
pub fn has_session(state: &AppState, headers: &HeaderMap) -> bool {
    let token = state.settings.serve.token.expose();
    if token.is_empty() {
        return true;
    }
    let offered = cookie(headers, SESSION_COOKIE).unwrap_or_default();
    bool::from(offered.as_bytes().ct_eq(session_value(token).as_bytes()))
}

/// Lets the request through when no token is configured, the right bearer token is offered
/// or the dashboard's session cookie is valid; otherwise answers 401 with a
/// `WWW-Authenticate: Bearer` challenge.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.settings.serve.token.expose().is_empty() {
        return Ok(next.run(request).await);
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let bearer_ok = bearer.is_some_and(|offered| token_matches(&state, offered));
    if bearer_ok || has_session(&state, request.headers()) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_value_is_the_rfc_4231_hmac_of_the_token() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(session_value("a").len(), 64);
        assert_ne!(session_value("a"), session_value("b"));
        assert_eq!(session_value("a"), session_value("a"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "x_segscope_session=1; segscope_session=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "other"), None);
    }
}
