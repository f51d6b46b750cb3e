//! The scheduler's write path: a batch of typed changes applied in one
//! transaction by `Store::apply`.
//!
//! A batch is all or nothing. Changes apply in order, so a later change sees
//! the effect of an earlier one (a `SetTiState` can follow the
//! `ExpandMapped` that created its task instance). A state change may carry
//! an expectation of the current state (compare-and-set); if any expectation
//! fails the whole batch fails with `StoreError::Conflict` and nothing is
//! written. That is what makes a double completion impossible: two reports of
//! the same attempt both expect `running` with that try number, and only the
//! first one finds it.

use crate::records::{NewRun, NewXcom, RunKey, TiKey, TryRecord};
use chrono::{DateTime, Utc};
use pave_core::run::FlowResult;
use pave_core::{RunState, TaskId, TaskState, TryNumber};
use serde_json::Value;

/// Changes to apply in one transaction, at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeBatch {
    /// The time stamped on every row the batch touches (`updated_at`,
    /// `created_at`, a run's `queued_at`...). The store never reads a clock.
    pub now: DateTime<Utc>,
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    pub fn new(now: DateTime<Utc>) -> Self {
        ChangeBatch {
            now,
            changes: Vec::new(),
        }
    }
    pub fn one(now: DateTime<Utc>, change: impl Into<Change>) -> Self {
        ChangeBatch {
            now,
            changes: vec![change.into()],
        }
    }
    pub fn push(&mut self, change: impl Into<Change>) -> &mut Self {
        self.changes.push(change.into());
        self
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    pub fn len(&self) -> usize {
        self.changes.len()
    }
}

/// One change of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create a run and its task instances (one per task, map index -1,
    /// state `none`). Its key is reported in `BatchOutcome::created_runs`.
    CreateRun(NewRun),
    SetRunState(RunChange),
    SetTiState(TiChange),
    /// Replace the placeholder (map index -1) of a mapped task by `count`
    /// instances 0..count in state `none`, copying the placeholder's pool,
    /// slots, priority weight and max tries. `count` must be at least 1: an
    /// empty expansion is a `SetTiState` of the placeholder to skipped.
    ExpandMapped {
        run: RunKey,
        task_id: TaskId,
        count: u32,
    },
    /// Insert or complete the history row of one attempt.
    RecordTry(TryRecord),
    /// Insert or replace an XCom value.
    PutXcom(NewXcom),
    /// Change nothing, but fail the batch with a conflict unless the task
    /// instance is live in this try: `queued` or `running` with this try
    /// number. (A task calls the execution API only once its attempt has
    /// started, and its `running` write may come a little after; a write
    /// of the task guards itself with this rather than by expecting
    /// `running`, which would also have to set a state.)
    RequireLive {
        ti: TiKey,
        try_number: TryNumber,
    },
}

impl From<NewRun> for Change {
    fn from(run: NewRun) -> Self {
        Change::CreateRun(run)
    }
}
impl From<RunChange> for Change {
    fn from(c: RunChange) -> Self {
        Change::SetRunState(c)
    }
}
impl From<TiChange> for Change {
    fn from(c: TiChange) -> Self {
        Change::SetTiState(c)
    }
}
impl From<TryRecord> for Change {
    fn from(t: TryRecord) -> Self {
        Change::RecordTry(t)
    }
}
impl From<NewXcom> for Change {
    fn from(x: NewXcom) -> Self {
        Change::PutXcom(x)
    }
}

/// What `Store::apply` reports back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Keys of the runs created, in the order of their `CreateRun` changes.
    pub created_runs: Vec<RunKey>,
}

/// How an update treats one nullable column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Leave the stored value as it is.
    #[default]
    Keep,
    Set(T),
    /// Set the column to NULL.
    Clear,
}

impl<T> Field<T> {
    /// `Some(Some(v))` to set, `Some(None)` to clear, `None` to keep.
    pub fn as_update(&self) -> Option<Option<&T>> {
        match self {
            Field::Keep => None,
            Field::Set(v) => Some(Some(v)),
            Field::Clear => Some(None),
        }
    }
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Field<U> {
        match self {
            Field::Keep => Field::Keep,
            Field::Set(v) => Field::Set(f(v)),
            Field::Clear => Field::Clear,
        }
    }
}

/// The state a task instance must be in for a change to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub state: TaskState,
    /// Also require this try number (for reports about one attempt).
    pub try_number: Option<TryNumber>,
}

/// A state change of one task instance, with the fields that go with it.
///
/// Build it with `TiChange::new(key, state)` and the setters:
/// ```
/// # use pave_store::{TiChange, TiKey, RunKey};
/// # use pave_core::{TaskState, TryNumber};
/// # let now = chrono::Utc::now();
/// let key = TiKey::unmapped(RunKey(1), "train");
/// let change = TiChange::new(key, TaskState::Success)
///     .expect_attempt(TaskState::Running, TryNumber(1))
///     .end_date(now)
///     .reason("exit code 0");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TiChange {
    pub key: TiKey,
    pub state: TaskState,
    /// Compare-and-set: fail the batch unless the task instance is in this state.
    pub expected: Option<Expected>,
    pub try_number: Option<TryNumber>,
    pub max_tries: Option<u32>,
    pub next_retry_at: Field<DateTime<Utc>>,
    pub start_date: Field<DateTime<Utc>>,
    pub end_date: Field<DateTime<Utc>>,
    pub queued_at: Field<DateTime<Utc>>,
    pub executor_handle: Field<Value>,
    pub hostname: Field<String>,
    pub flow_result: Field<FlowResult>,
    pub reason: Field<String>,
}

impl TiChange {
    /// Move `key` to `state`, changing nothing else.
    pub fn new(key: TiKey, state: TaskState) -> Self {
        TiChange {
            key,
            state,
            expected: None,
            try_number: None,
            max_tries: None,
            next_retry_at: Field::Keep,
            start_date: Field::Keep,
            end_date: Field::Keep,
            queued_at: Field::Keep,
            executor_handle: Field::Keep,
            hostname: Field::Keep,
            flow_result: Field::Keep,
            reason: Field::Keep,
        }
    }
    /// Apply only if the task instance is currently in `state`.
    pub fn expect(mut self, state: TaskState) -> Self {
        self.expected = Some(Expected {
            state,
            try_number: None,
        });
        self
    }
    /// Apply only if the task instance is in `state` with this try number.
    pub fn expect_attempt(mut self, state: TaskState, try_number: TryNumber) -> Self {
        self.expected = Some(Expected {
            state,
            try_number: Some(try_number),
        });
        self
    }
    pub fn try_number(mut self, n: TryNumber) -> Self {
        self.try_number = Some(n);
        self
    }
    pub fn max_tries(mut self, n: u32) -> Self {
        self.max_tries = Some(n);
        self
    }
    pub fn next_retry_at(mut self, t: DateTime<Utc>) -> Self {
        self.next_retry_at = Field::Set(t);
        self
    }
    pub fn start_date(mut self, t: DateTime<Utc>) -> Self {
        self.start_date = Field::Set(t);
        self
    }
    pub fn end_date(mut self, t: DateTime<Utc>) -> Self {
        self.end_date = Field::Set(t);
        self
    }
    pub fn queued_at(mut self, t: DateTime<Utc>) -> Self {
        self.queued_at = Field::Set(t);
        self
    }
    pub fn executor_handle(mut self, handle: Value) -> Self {
        self.executor_handle = Field::Set(handle);
        self
    }
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Field::Set(hostname.into());
        self
    }
    pub fn flow_result(mut self, result: FlowResult) -> Self {
        self.flow_result = Field::Set(result);
        self
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Field::Set(reason.into());
        self
    }
}

/// A state change of one DAG run.
///
/// Moving to `running` sets `start_date` to the batch's `now` if it is not
/// set; moving to a finished state sets `end_date` to `now`; moving back to
/// `queued` or `running` clears `end_date` (and `queued` sets `queued_at`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunChange {
    pub run: RunKey,
    pub state: RunState,
    /// Compare-and-set: fail the batch unless the run is in this state.
    pub expected: Option<RunState>,
    pub note: Field<String>,
}

impl RunChange {
    pub fn new(run: RunKey, state: RunState) -> Self {
        RunChange {
            run,
            state,
            expected: None,
            note: Field::Keep,
        }
    }
    pub fn expect(mut self, state: RunState) -> Self {
        self.expected = Some(state);
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Field::Set(note.into());
        self
    }
}
