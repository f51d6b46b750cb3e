//! pave-store: persistence for pave behind the `Store` trait.
//!
//! The trait (`store.rs`) speaks in records (`records.rs`) made of
//! pave-core's types, and takes every write of run and task state as one
//! `ChangeBatch` (`batch.rs`) applied in a single transaction with
//! compare-and-set expectations. `SqliteStore` is the embedded default
//! (a WAL-mode file, or memory for tests and `pave dags test`); a
//! PostgreSQL backend will implement the same trait with its own migrations
//! under `migrations/postgres/` and must pass the same conformance suite.
//!
//! Architecture invariant: no SQL outside `sqlite/` (and later `postgres/`),
//! and no clock: every timestamp the store writes comes from its caller.

pub mod batch;
pub mod error;
pub mod query;
pub mod records;
pub mod sqlite;
pub mod store;
pub mod timed;

pub use batch::{BatchOutcome, Change, ChangeBatch, Expected, Field, RunChange, TiChange};
pub use error::{Result, StoreError};
pub use query::{
    ApiStore, ApiTokenRecord, AuthStore, DagQuery, DagSort, NewApiToken, NewUser, Order, Page,
    PageRequest, QueryStore, Role, RunQuery, RunSort, SessionRecord, SortDir, TiQuery, TiSort,
    TimeRange, TokenId, UserId, UserRecord, XcomQuery,
};
pub use records::*;
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::Store;
pub use timed::TimedStore;
