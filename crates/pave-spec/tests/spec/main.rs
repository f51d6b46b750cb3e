//! The one integration test binary of pave-spec: golden files, round trips,
//! error messages, the example pipeline, and never-panic fuzzing.
#![allow(clippy::unwrap_used)]

mod errors;
mod example;
mod fuzz;
mod golden;
mod roundtrip;

use pave_spec::ValidateOptions;

/// The options every test validates with: two pools exist besides `default_pool`.
pub fn opts() -> ValidateOptions {
    ValidateOptions {
        known_pools: Some(["cpu".to_owned(), "gpu".to_owned()].into()),
    }
}

pub fn manifest_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
