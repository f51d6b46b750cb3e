//! Login CSRF: keeping other sites from logging a browser in.
//!
//! Before a login there is no session, hence no session CSRF token, and a
//! page on another site could post the login form with an attacker's
//! username and password: the victim's browser would then act as the
//! attacker (and whatever they do, trigger or upload, lands in the
//! attacker's account). Two checks, as mature tools do:
//!
//! - [`check_same_origin`], on every login (the REST API's and the UI's):
//!   the browser's own word on where the request comes from. Every current
//!   browser sends `Sec-Fetch-Site`; it must be `same-origin` or `none` (the
//!   user typed the address). Without it, an `Origin` header must name the
//!   host the request was sent to. A request with neither is not from a
//!   browser's form or script (curl, scripts) and passes. This is Go's
//!   `http.CrossOriginProtection` and Django's origin check.
//! - The UI's login form also carries a pre-session token (double submit,
//!   as Django's login form): `GET /login` sets a random value as the
//!   `pave_login_csrf` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/login`)
//!   and repeats it in the form; `POST /login` must bring both, equal. Other
//!   sites can neither read the cookie nor set it.
//!
//! Both refuse with 403 and open no session.

use super::secret::{self, same_secret};
use crate::problem::Problem;
use crate::state::RestState;
use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie holding the login form's pre-session token.
pub const LOGIN_CSRF_COOKIE: &str = "pave_login_csrf";

/// 403 unless the request comes from this site (or from no browser at all).
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), Problem> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
            return Ok(());
        }
        return Err(Problem::forbidden(format!(
            "cross-site login refused: the browser says this request came from another site \
             (`Sec-Fetch-Site: {site}`); log in from pave's own login page"
        )));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(Problem::forbidden(format!(
        "cross-site login refused: the request comes from `{origin}`, not from `{host}`; \
         log in from pave's own login page"
    )))
}

/// A new pre-session token for the login form.
pub fn new_login_token() -> Result<String, Problem> {
    secret::random_secret().map_err(|e| Problem::internal(e.to_string()))
}

/// The login token the browser sent in its cookie, if it looks like one
/// (URL-safe base64 of a sensible length).
pub fn login_token(headers: &HeaderMap) -> Option<String> {
    super::session::cookie(headers, LOGIN_CSRF_COOKIE).filter(|v| {
        (20..=128).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether the form's token matches the cookie's (both present).
pub fn login_token_matches(headers: &HeaderMap, sent: Option<&str>) -> bool {
    match (login_token(headers), sent) {
        (Some(cookie), Some(field)) if !field.is_empty() => same_secret(&cookie, field),
        _ => false,
    }
}

fn secure(state: &RestState) -> &'static str {
    if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    }
}

/// The `Set-Cookie` value that gives the browser a login token. No
/// `Max-Age`: it lasts as long as the browser session.
pub fn login_token_cookie(state: &RestState, token: &str) -> HeaderValue {
    let text = format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict{}",
        secure(state)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the login token (after a login).
pub fn clear_login_token_cookie(state: &RestState) -> HeaderValue {
    let text = format!(
        "{LOGIN_CSRF_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(state)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    #[test]
    fn only_this_site_or_no_browser_may_log_in() {
        let ok = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080"),
            ]),
            // Sec-Fetch-Site is the browser's own verdict and wins.
            headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
        ];
        for h in ok {
            assert!(check_same_origin(&h).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:8080"),
            ]),
            headers(&[("origin", "null"), ("host", "127.0.0.1:8080")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
            headers(&[
                ("origin", "http://127.0.0.1:8081"),
                ("host", "127.0.0.1:8080"),
            ]),
        ];
        for h in refused {
            let p = check_same_origin(&h).expect_err("refused");
            assert_eq!(p.status, 403, "{h:?}");
            assert!(
                p.detail.contains("cross-site login refused"),
                "{}",
                p.detail
            );
        }
    }

    #[test]
    fn the_form_token_must_match_the_cookie() {
        let token = new_login_token().expect("a token");
        let h = headers(&[("cookie", &format!("a=b; {LOGIN_CSRF_COOKIE}={token}"))]);
        assert!(login_token_matches(&h, Some(&token)));
        assert!(!login_token_matches(
            &h,
            Some("forged-forged-forged-forged")
        ));
        assert!(!login_token_matches(&h, None));
        assert!(!login_token_matches(&headers(&[]), Some(&token)));
        let odd = headers(&[("cookie", &format!("{LOGIN_CSRF_COOKIE}=<script>"))]);
        assert_eq!(login_token(&odd), None);
    }
}
