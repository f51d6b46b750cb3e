//! pave-api: pave's HTTP surfaces. For now the task execution API
//! (`docs/execution-api.md`), through which a running task reads its
//! context and XComs and pushes its own XComs without touching the
//! database; the public and UI APIs will live beside it.
//!
//! `token` issues and checks the attempt-scoped bearer tokens, `execution`
//! is the router, `error` maps every failure to a status code in one place,
//! and `server` binds loopback and serves.
//!
//! API boundary: this crate is the edge. It speaks JSON and HTTP and turns
//! them into calls of `pave_store::Store` and of the scheduler's pure
//! helpers; no scheduling rule lives here.

pub mod error;
pub mod execution;
pub mod server;
pub mod token;

pub use error::ApiError;
pub use execution::{
    Attempt, ExecutionLimits, ExecutionState, MAX_BODY_BYTES, TiContext, execution_router,
};
pub use server::{bind_loopback, serve};
pub use token::{AttemptScope, KeyError, TokenError, TokenSigner};

/// Where the caller nests `execution_router`, by convention.
pub const EXECUTION_API_PREFIX: &str = "/execution/v1";
