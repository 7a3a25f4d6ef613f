//! Bearer-token auth for the API: with `serve.token` set, every `/api` request must carry
//! `Authorization: Bearer <token>`; the comparison takes the same time whatever the guess,
//! and neither the expected nor the offered token is ever logged or echoed.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::AppState;
use super::api::ApiError;

/// Lets the request through when no token is configured or the right one is offered;
/// otherwise answers 401 with a `WWW-Authenticate: Bearer` challenge.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let expected = &state.settings.serve.token;
    if expected.is_empty() {
        return Ok(next.run(request).await);
    }
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(offered.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}
