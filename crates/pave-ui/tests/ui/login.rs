//! The login form's own CSRF protection: a form posted from another site
//! is refused with 403 and opens no session; the form from `GET /login`
//! works.

use super::{Reply, Ui, enc};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use pave_rest::auth::secret;
use pave_store::AuthStore;

/// GETs `/login` anonymously; returns the login-token cookie (`name=value`)
/// and the token of the form's hidden field.
pub(super) async fn login_token(ui: &Ui) -> (String, String) {
    let page = ui.get_as(None, "/login").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let set = page.headers[header::SET_COOKIE]
        .to_str()
        .expect("text")
        .to_owned();
    for attr in [
        "pave_login_csrf=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/login",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().expect("a cookie").to_owned();
    let field = page
        .text
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a login token on the form")
        .to_owned();
    assert_eq!(cookie, format!("pave_login_csrf={field}"));
    (cookie, field)
}

/// POSTs the login form with these extra headers, cookie and token.
async fn post_login(
    ui: &Ui,
    headers: &[(&str, &str)],
    cookie: Option<&str>,
    token: Option<&str>,
) -> Reply {
    let mut body = "username=admin&password=s3cret&next=%2F".to_owned();
    if let Some(t) = token {
        body.push_str(&format!("&csrf_token={}", enc(t)));
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    ui.send(req.body(Body::from(body)).expect("a request"))
        .await
}

fn opened_a_session(r: &Reply) -> bool {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("pave_session=") && !v.contains("Max-Age=0"))
}

#[tokio::test]
async fn a_cross_site_login_is_refused_and_the_own_form_works() {
    let ui = Ui::new().await;
    let hash = secret::hash_password("s3cret").expect("hash");
    ui.store
        .set_password("admin", &hash)
        .await
        .expect("set the password");
    let (cookie, token) = login_token(&ui).await;

    // Another site's form, even with a correct password: the browser says
    // where it comes from.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ],
        vec![("origin", "null"), ("host", "127.0.0.1:8080")],
    ] {
        // An attacker cannot read the victim's login cookie; give them the
        // benefit of the doubt anyway: the origin alone refuses it.
        let r = post_login(&ui, &headers, Some(&cookie), Some(&token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}: {r:?}");
        assert!(r.text.contains("came from another site"), "{r:?}");
        assert!(!opened_a_session(&r), "{headers:?}: {r:?}");
    }
    // An old browser that sends neither header: the login token decides.
    let no_token = post_login(&ui, &[], None, None).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN, "{no_token:?}");
    assert!(no_token.text.contains("login token"), "{no_token:?}");
    assert!(!opened_a_session(&no_token));
    // The refusal hands out a fresh token, so the user can just sign in.
    assert!(
        no_token.headers[header::SET_COOKIE]
            .to_str()
            .unwrap_or("")
            .starts_with("pave_login_csrf="),
        "{no_token:?}"
    );
    let forged = post_login(&ui, &[], Some(&cookie), Some("forged-forged-forged-forged")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
    assert!(!opened_a_session(&forged));
    let cookie_only = post_login(&ui, &[], Some(&cookie), None).await;
    assert_eq!(cookie_only.status, StatusCode::FORBIDDEN);
    let field_only = post_login(&ui, &[], None, Some(&token)).await;
    assert_eq!(field_only.status, StatusCode::FORBIDDEN);

    // The page's own form: same origin, the cookie and the field.
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ],
        vec![],
    ] {
        let ok = post_login(&ui, &headers, Some(&cookie), Some(&token)).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{headers:?}: {ok:?}");
        assert!(opened_a_session(&ok), "{ok:?}");
        // The used token is dropped; the next login gets a new one.
        assert!(
            ok.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.starts_with("pave_login_csrf=;") && v.contains("Max-Age=0")),
            "{ok:?}"
        );
    }
}

#[tokio::test]
async fn a_second_visit_keeps_the_login_token() {
    let ui = Ui::new().await;
    let (cookie, token) = login_token(&ui).await;
    let again = ui
        .send(
            Request::builder()
                .uri("/login")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.headers.get(header::SET_COOKIE).is_none(), "{again:?}");
    assert!(
        again
            .text
            .contains(&format!(r#"name="csrf_token" value="{token}""#)),
        "{again:?}"
    );
}
