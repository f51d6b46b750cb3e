//! The template environment: every embedded template, autoescaped as HTML
//! (all templates end in `.html`), with the few filters the pages need.

use crate::assets::{Templates, asset_url};
use crate::error::UiError;
use axum::response::Html;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

/// The environment, built once per process.
pub(crate) fn shared() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(environment)
}

/// The environment with every template under `templates/` loaded.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Printing a missing variable is a bug, caught by the tests; testing
    // one with `if` is fine.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for name in Templates::iter() {
        let Some(file) = Templates::get(&name) else {
            continue;
        };
        let text = String::from_utf8_lossy(&file.data).into_owned();
        if let Err(e) = env.add_template_owned(name.into_owned(), text) {
            // Templates are part of the build; a broken one fails the tests.
            tracing::error!("UI template does not parse: {e}");
        }
    }
    env.add_function("asset", |name: &str| asset_url(name));
    env.add_filter("seg", |s: &str| segment(s));
    env.add_filter("pretty", |v: Value| -> String {
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    });
    env
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved
/// characters, so ids with `/`, `+`, `:` or spaces make valid links.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Renders `template` with `ctx`.
pub(crate) fn render<S: Serialize>(template: &str, ctx: S) -> Result<Html<String>, UiError> {
    let tmpl = shared()
        .get_template(template)
        .map_err(|e| UiError::Internal(format!("template `{template}`: {e}")))?;
    let html = tmpl
        .render(minijinja::value::Serde(&ctx))
        .map_err(|e| UiError::Internal(format!("rendering `{template}`: {e:#}")))?;
    Ok(Html(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_fully_encoded() {
        assert_eq!(
            segment("manual__2026-01-01T00:00:00+00:00"),
            "manual__2026-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("group.task"), "group.task");
    }

    #[test]
    fn every_template_parses() {
        let env = environment();
        for name in Templates::iter() {
            assert!(env.get_template(&name).is_ok(), "{name}");
        }
    }
}
