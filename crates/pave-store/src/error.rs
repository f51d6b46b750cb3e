//! The one error type of the store, shared by every backend.

/// What went wrong in a store operation. Messages name the thing concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist (`what` names it, e.g. "dag run #42").
    #[error("{what} not found")]
    NotFound { what: String },
    /// The write conflicts with what is stored: a compare-and-set whose
    /// expectation failed, a duplicate key, a lease held by someone else.
    /// Nothing of the batch or operation was written.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// The input cannot be stored as given (an expansion to 0 instances, a
    /// DAG version that belongs to another DAG).
    #[error("invalid input: {what}")]
    Invalid { what: String },
    /// Stored data cannot be read back (invalid JSON, an unknown state name).
    #[error("corrupt data: {what}")]
    Corrupt { what: String },
    /// The database failed (IO, locking, a lost connection).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }
    pub fn conflict(what: impl Into<String>) -> Self {
        StoreError::Conflict { what: what.into() }
    }
    pub fn invalid(what: impl Into<String>) -> Self {
        StoreError::Invalid { what: what.into() }
    }
    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
