//! What the public REST API and the web UI ask of persistence beyond the
//! scheduler's `Store`: paged, filtered and ordered listings, deleting a
//! run, and the records of authentication (users, API tokens, sessions).
//!
//! Two traits, both object safe: [`QueryStore`] (reads for people, and the
//! one write the scheduler never does: deleting a run) and [`AuthStore`].
//! [`ApiStore`] is both, plus `Store`, implemented for every type that has
//! all three, so an `Arc<dyn ApiStore>` can be handed to the HTTP layer and
//! upcast to `Arc<dyn Store>` for the scheduler's helpers.
//!
//! Every state change of runs and task instances still goes through
//! `Store::apply` (compare-and-set, history kept); nothing here changes one.
//! The store reads no clock: expiry is the caller's to check, with the
//! times it passes in and reads back.

use crate::error::Result;
use crate::records::{
    DagRecord, DagVersionRecord, ImportErrorRecord, RunKey, RunRecord, RunType, TiRecord,
    XcomRecord,
};
use crate::store::Store;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pave_core::{DagId, MapIndex, RunId, RunState, TaskId, TaskState, TryNumber};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

// ---------------------------------------------------------------- paging

/// Which slice of a listing to return (Airflow's `limit` and `offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl Default for PageRequest {
    /// Airflow's default page: the first 100 entries.
    fn default() -> Self {
        PageRequest {
            limit: 100,
            offset: 0,
        }
    }
}

/// One page of a listing and the number of entries of the whole listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Entries matching the filter, on every page together.
    pub total_entries: u64,
}

impl<T> Page<T> {
    /// Pages an in-memory listing (for short ones such as pools).
    pub fn from_vec(all: Vec<T>, page: PageRequest) -> Page<T> {
        let total_entries = all.len() as u64;
        let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        Page {
            items: all.into_iter().skip(offset).take(limit).collect(),
            total_entries,
        }
    }
}

/// Ascending or descending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortDir {
    #[default]
    Asc,
    Desc,
}

/// A field to order a listing by, and the direction. Ties are broken by
/// the listing's key, so pages never overlap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Order<F> {
    pub field: F,
    pub dir: SortDir,
}

/// An inclusive range of times; either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub gte: Option<DateTime<Utc>>,
    pub lte: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- DAGs

/// Fields a DAG listing can be ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DagSort {
    #[default]
    DagId,
    LastParsedAt,
    CreatedAt,
}

/// Which DAGs `QueryStore::query_dags` returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DagQuery {
    /// DAG ids containing this text (SQL `LIKE '%text%'`, with `%` and `_`
    /// as wildcards, as in Airflow's `dag_id_pattern`).
    pub dag_id_pattern: Option<String>,
    pub paused: Option<bool>,
    /// DAGs whose latest version has any of these tags; empty means all.
    pub tags: Vec<String>,
    pub order: Order<DagSort>,
    pub page: PageRequest,
}

// ---------------------------------------------------------------- runs

/// Fields a run listing can be ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunSort {
    /// The store's key: creation order.
    #[default]
    Id,
    RunId,
    DagId,
    State,
    RunAfter,
    LogicalDate,
    StartDate,
    EndDate,
}

/// Which runs `QueryStore::query_runs` returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunQuery {
    /// `None` means the runs of every DAG (Airflow's `~`).
    pub dag_id: Option<DagId>,
    /// Empty means every state.
    pub states: Vec<RunState>,
    pub run_types: Vec<RunType>,
    pub logical_date: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub order: Order<RunSort>,
    pub page: PageRequest,
}

// ---------------------------------------------------------------- task instances

/// Fields a task-instance listing can be ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TiSort {
    /// Run, then task id, then map index.
    #[default]
    Key,
    TaskId,
    MapIndex,
    State,
    StartDate,
    EndDate,
    Duration,
    TryNumber,
    PriorityWeight,
    Pool,
}

/// Which task instances `QueryStore::query_tis` returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TiQuery {
    /// `None`: every DAG.
    pub dag_id: Option<DagId>,
    /// `None`: every run (of the DAG, if one is given).
    pub run_id: Option<RunId>,
    pub task_ids: Vec<TaskId>,
    pub map_index: Option<MapIndex>,
    /// Empty means every state.
    pub states: Vec<TaskState>,
    pub pools: Vec<String>,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub order: Order<TiSort>,
    pub page: PageRequest,
}

// ---------------------------------------------------------------- XComs

/// Which XComs `QueryStore::query_xcoms` returns, by task, map index and key.
#[derive(Clone, Debug, PartialEq)]
pub struct XcomQuery {
    pub run: RunKey,
    pub task_id: Option<TaskId>,
    pub map_index: Option<MapIndex>,
    pub key: Option<String>,
    pub page: PageRequest,
}

// ---------------------------------------------------------------- the grid

/// A run as the web UI's grid shows it: only the columns of a column header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridRun {
    pub key: RunKey,
    pub run_id: RunId,
    pub state: RunState,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// A task instance as the web UI's grid shows it: only what a cell needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridTi {
    pub run: RunKey,
    pub task_id: TaskId,
    pub map_index: MapIndex,
    pub state: TaskState,
    pub try_number: TryNumber,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- the query trait

/// Listings for people (the REST API and the UI), on top of `Store`.
#[async_trait]
pub trait QueryStore: Store {
    async fn query_dags(&self, query: &DagQuery) -> Result<Page<DagRecord>>;
    async fn query_runs(&self, query: &RunQuery) -> Result<Page<RunRecord>>;
    async fn query_tis(&self, query: &TiQuery) -> Result<Page<TiRecord>>;
    async fn query_xcoms(&self, query: &XcomQuery) -> Result<Page<XcomRecord>>;
    /// The versions of a DAG, newest first. NotFound if the DAG is unknown.
    async fn list_dag_versions(
        &self,
        dag_id: &DagId,
        page: PageRequest,
    ) -> Result<Page<DagVersionRecord>>;
    /// Version `number` (1, 2, ...) of a DAG. NotFound names both.
    async fn get_dag_version_by_number(
        &self,
        dag_id: &DagId,
        number: u32,
    ) -> Result<DagVersionRecord>;
    /// Import errors by file, paged.
    async fn query_import_errors(&self, page: PageRequest) -> Result<Page<ImportErrorRecord>>;
    /// Deletes a run with its task instances, tries and XComs. NotFound if
    /// it does not exist; Conflict (and nothing deleted) while any of its
    /// task instances is queued, running or restarting: an attempt that is
    /// running must end, or be marked, first.
    async fn delete_run(&self, run: RunKey) -> Result<()>;
    /// The `limit` newest runs of a DAG (in creation order, newest first)
    /// with only the columns the web UI's grid shows; empty for a DAG
    /// without runs (or an unknown one). A narrow `query_runs`: no conf,
    /// no count.
    async fn grid_runs(&self, dag_id: &DagId, limit: u32) -> Result<Vec<GridRun>>;
    /// The task instances of `runs`, ordered by run key, task id and map
    /// index, with only the columns a grid cell shows (a narrow `runs_tis`
    /// for the grid, which the UI polls every few seconds).
    async fn grid_tis(&self, runs: &[RunKey]) -> Result<Vec<GridTi>>;
}

// ---------------------------------------------------------------- authentication

/// What a user may do, in Airflow's roles; each includes the ones before it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    #[default]
    Viewer,
    /// Also triggers, pauses, clears, marks and deletes runs.
    User,
    /// Also manages pools.
    Op,
    /// Also manages users.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::User, Role::Op, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Op => "op",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`; use one of viewer, user, op, admin"))
    }
}

/// The store's key of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    /// The argon2 PHC string; `None` for a user who can only use API tokens.
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub role: Role,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The store's key of an API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub i64);

/// An API token, without its secret: the store keeps only a hash of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API token to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiToken {
    pub user_id: UserId,
    pub name: String,
    /// Hex SHA-256 of the token's secret text.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A browser session: who is logged in, and the CSRF token of the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session cookie's value (the cookie is the secret).
    pub session_hash: String,
    pub user_id: UserId,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Users, API tokens and sessions.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Conflict if the username is taken; Invalid if it is empty.
    async fn create_user(&self, user: NewUser) -> Result<UserRecord>;
    /// NotFound names the username.
    async fn get_user(&self, username: &str) -> Result<UserRecord>;
    async fn get_user_by_id(&self, id: UserId) -> Result<UserRecord>;
    /// Every user, by username.
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    async fn count_users(&self) -> Result<u64>;
    /// Replaces a user's password hash. NotFound names the username.
    async fn set_password(&self, username: &str, password_hash: &str) -> Result<()>;
    /// Changes a user's role. NotFound names the username.
    async fn set_role(&self, username: &str, role: Role) -> Result<()>;
    /// Deletes a user with their tokens and sessions.
    async fn delete_user(&self, username: &str) -> Result<()>;

    async fn create_api_token(&self, token: NewApiToken) -> Result<ApiTokenRecord>;
    /// The token with this hash and its user, expired or not (the caller
    /// checks `expires_at`). NotFound if no token has this hash.
    async fn find_api_token(&self, token_hash: &str) -> Result<(ApiTokenRecord, UserRecord)>;
    /// A user's tokens, oldest first.
    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenRecord>>;
    async fn delete_api_token(&self, id: TokenId) -> Result<()>;

    async fn create_session(&self, session: SessionRecord) -> Result<()>;
    /// The session with this hash and its user, expired or not.
    async fn find_session(&self, session_hash: &str) -> Result<(SessionRecord, UserRecord)>;
    /// Logs a session out. No-op if it does not exist.
    async fn delete_session(&self, session_hash: &str) -> Result<()>;
    /// Forgets sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;
}

/// Everything the HTTP surfaces need: `Store`, [`QueryStore`] and
/// [`AuthStore`]. Implemented for every type that has all three; share it
/// as `Arc<dyn ApiStore>` and upcast to `Arc<dyn Store>` where the
/// scheduler's helpers want one.
pub trait ApiStore: QueryStore + AuthStore {}

impl<T: QueryStore + AuthStore + ?Sized> ApiStore for T {}
