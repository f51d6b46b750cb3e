//! Paged, filtered and ordered listings in SQLite (`QueryStore`), and
//! deleting a run.
//!
//! Each listing is one statement for the page and one for the count, made
//! of fixed pieces: every filter is a fixed condition with a bound value,
//! and the ORDER BY column comes from a fixed table per sort field, so no
//! text from a request ever becomes SQL.

use super::SqliteStore;
use super::conv::{corrupt_row, json_text, parse, time, time_opt, ts, unsigned};
use super::dags::{DagRow, VersionRow};
use super::runs::RunRow;
use super::tis::{TI_COLUMNS, TiRow};
use super::xcom::XcomRow;
use crate::error::{Result, StoreError};
use crate::query::{
    DagQuery, DagSort, GridRun, GridTi, Order, Page, PageRequest, QueryStore, RunQuery, RunSort,
    SortDir, TiQuery, TiSort, TimeRange, XcomQuery,
};
use crate::records::{
    DagRecord, DagVersionRecord, ImportErrorRecord, RunKey, RunRecord, TiRecord, XcomRecord,
};
use async_trait::async_trait;
use pave_core::{DagId, MapIndex, RunId, TaskId, TaskState, TryNumber};
use sqlx::{AssertSqlSafe, FromRow, SqlitePool};

/// A value bound to a `?` of a listing's statement.
#[derive(Clone, Debug)]
enum Bind {
    Int(i64),
    Text(String),
}

/// The WHERE clause of a listing, built from fixed conditions.
#[derive(Default)]
struct Filter {
    conditions: Vec<&'static str>,
    binds: Vec<Bind>,
}

impl Filter {
    fn cond(&mut self, sql: &'static str, bind: Bind) {
        self.conditions.push(sql);
        self.binds.push(bind);
    }
    /// `column IN (values)`, the values travelling as one JSON array.
    fn any_of(&mut self, sql: &'static str, values: Vec<&str>) {
        if !values.is_empty() {
            self.cond(sql, Bind::Text(json_text(&values)));
        }
    }
    fn range(&mut self, gte: &'static str, lte: &'static str, range: TimeRange) {
        if let Some(t) = range.gte {
            self.cond(gte, Bind::Int(ts(t)));
        }
        if let Some(t) = range.lte {
            self.cond(lte, Bind::Int(ts(t)));
        }
    }
    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }
}

fn dir(d: SortDir) -> &'static str {
    match d {
        SortDir::Asc => "ASC",
        SortDir::Desc => "DESC",
    }
}

/// `ORDER BY column dir, tie-breakers dir` from fixed pieces.
fn order_by<F: Copy>(
    order: Order<F>,
    column: impl Fn(F) -> &'static str,
    ties: &[&'static str],
) -> String {
    let d = dir(order.dir);
    let mut parts = vec![format!("{} {d}", column(order.field))];
    parts.extend(ties.iter().map(|t| format!("{t} {d}")));
    format!(" ORDER BY {}", parts.join(", "))
}

fn limit_offset(page: PageRequest) -> (i64, i64) {
    (
        i64::from(page.limit),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

/// Runs the page and count statements of a listing.
async fn page<R>(
    pool: &SqlitePool,
    select: &str,
    from: &str,
    filter: &Filter,
    order: &str,
    page: PageRequest,
) -> Result<(Vec<R>, u64)>
where
    R: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let where_clause = filter.where_clause();
    let (limit, offset) = limit_offset(page);
    let sql = format!("{select} {from}{where_clause}{order} LIMIT ? OFFSET ?");
    let mut q = sqlx::query_as::<_, R>(AssertSqlSafe(sql));
    for b in &filter.binds {
        q = match b {
            Bind::Int(v) => q.bind(*v),
            Bind::Text(v) => q.bind(v.clone()),
        };
    }
    let rows = q.bind(limit).bind(offset).fetch_all(pool).await?;
    let count_sql = format!("SELECT COUNT(*) {from}{where_clause}");
    let mut c = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
    for b in &filter.binds {
        c = match b {
            Bind::Int(v) => c.bind(*v),
            Bind::Text(v) => c.bind(v.clone()),
        };
    }
    let total = c.fetch_one(pool).await?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

fn dag_column(f: DagSort) -> &'static str {
    match f {
        DagSort::DagId => "dag_id",
        DagSort::LastParsedAt => "last_parsed_at",
        DagSort::CreatedAt => "created_at",
    }
}

fn run_column(f: RunSort) -> &'static str {
    match f {
        RunSort::Id => "id",
        RunSort::RunId => "run_id",
        RunSort::DagId => "dag_id",
        RunSort::State => "state",
        RunSort::RunAfter => "run_after",
        RunSort::LogicalDate => "logical_date",
        RunSort::StartDate => "start_date",
        RunSort::EndDate => "end_date",
    }
}

fn ti_column(f: TiSort) -> &'static str {
    match f {
        TiSort::Key => "ti.run_pk",
        TiSort::TaskId => "ti.task_id",
        TiSort::MapIndex => "ti.map_index",
        TiSort::State => "ti.state",
        TiSort::StartDate => "ti.start_date",
        TiSort::EndDate => "ti.end_date",
        TiSort::Duration => "ti.duration_us",
        TiSort::TryNumber => "ti.try_number",
        TiSort::PriorityWeight => "ti.priority_weight",
        TiSort::Pool => "ti.pool",
    }
}

#[derive(FromRow)]
struct ImportErrorRow {
    fileloc: String,
    timestamp: i64,
    stacktrace: String,
}

#[async_trait]
impl QueryStore for SqliteStore {
    async fn query_dags(&self, query: &DagQuery) -> Result<Page<DagRecord>> {
        let mut f = Filter::default();
        if let Some(p) = &query.dag_id_pattern {
            f.cond("dag_id LIKE '%' || ? || '%'", Bind::Text(p.clone()));
        }
        if let Some(paused) = query.paused {
            f.cond("is_paused = ?", Bind::Int(i64::from(paused)));
        }
        f.any_of(
            "EXISTS (SELECT 1 FROM dag_version v, json_each(v.spec_json, '$.dags[0].tags') t
                     WHERE v.id = dag.latest_version_id
                       AND t.value IN (SELECT value FROM json_each(?)))",
            query.tags.iter().map(String::as_str).collect(),
        );
        let order = order_by(query.order, dag_column, &["dag_id"]);
        let (rows, total) = page::<DagRow>(
            &self.pool,
            "SELECT dag_id, is_paused, fileloc, latest_version_id, last_parsed_at, created_at",
            "FROM dag",
            &f,
            &order,
            query.page,
        )
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(DagRow::into_record)
                .collect::<Result<_>>()?,
            total_entries: total,
        })
    }

    async fn query_runs(&self, query: &RunQuery) -> Result<Page<RunRecord>> {
        let mut f = Filter::default();
        if let Some(d) = &query.dag_id {
            f.cond("dag_id = ?", Bind::Text(d.to_string()));
        }
        f.any_of(
            "state IN (SELECT value FROM json_each(?))",
            query.states.iter().map(|s| s.as_str()).collect(),
        );
        f.any_of(
            "run_type IN (SELECT value FROM json_each(?))",
            query.run_types.iter().map(|t| t.as_str()).collect(),
        );
        f.range("logical_date >= ?", "logical_date <= ?", query.logical_date);
        f.range("start_date >= ?", "start_date <= ?", query.start_date);
        f.range("end_date >= ?", "end_date <= ?", query.end_date);
        let order = order_by(query.order, run_column, &["id"]);
        let (rows, total) = page::<RunRow>(
            &self.pool,
            "SELECT id, dag_id, run_id, dag_version_id, state, run_type, logical_date,
                    data_interval_start, data_interval_end, run_after, conf, start_date,
                    end_date, queued_at, note, created_at, updated_at",
            "FROM dag_run",
            &f,
            &order,
            query.page,
        )
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(RunRow::into_record)
                .collect::<Result<_>>()?,
            total_entries: total,
        })
    }

    async fn query_tis(&self, query: &TiQuery) -> Result<Page<TiRecord>> {
        let mut f = Filter::default();
        if let Some(d) = &query.dag_id {
            // With a run id, filter the run by (dag_id, run_id), its unique
            // key, and reach the task instances by their run: SQLite would
            // otherwise walk every task instance of the DAG (task_instance's
            // dag_id index), 70x slower at 100 runs of 20 tasks.
            let column = if query.run_id.is_some() {
                "r.dag_id = ?"
            } else {
                "ti.dag_id = ?"
            };
            f.cond(column, Bind::Text(d.to_string()));
        }
        if let Some(r) = &query.run_id {
            f.cond("r.run_id = ?", Bind::Text(r.to_string()));
        }
        f.any_of(
            "ti.task_id IN (SELECT value FROM json_each(?))",
            query.task_ids.iter().map(TaskId::as_str).collect(),
        );
        if let Some(m) = query.map_index {
            f.cond("ti.map_index = ?", Bind::Int(i64::from(m.0)));
        }
        f.any_of(
            "ti.state IN (SELECT value FROM json_each(?))",
            query.states.iter().map(|s| s.as_str()).collect(),
        );
        f.any_of(
            "ti.pool IN (SELECT value FROM json_each(?))",
            query.pools.iter().map(String::as_str).collect(),
        );
        f.range("ti.start_date >= ?", "ti.start_date <= ?", query.start_date);
        f.range("ti.end_date >= ?", "ti.end_date <= ?", query.end_date);
        let order = order_by(
            query.order,
            ti_column,
            &["ti.run_pk", "ti.task_id", "ti.map_index"],
        );
        let (rows, total) = page::<TiRow>(
            &self.pool,
            TI_COLUMNS,
            "FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk",
            &f,
            &order,
            query.page,
        )
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(TiRow::into_record)
                .collect::<Result<_>>()?,
            total_entries: total,
        })
    }

    async fn query_xcoms(&self, query: &XcomQuery) -> Result<Page<XcomRecord>> {
        let mut f = Filter::default();
        f.cond("run_pk = ?", Bind::Int(query.run.0));
        if let Some(t) = &query.task_id {
            f.cond("task_id = ?", Bind::Text(t.to_string()));
        }
        if let Some(m) = query.map_index {
            f.cond("map_index = ?", Bind::Int(i64::from(m.0)));
        }
        if let Some(k) = &query.key {
            f.cond("key = ?", Bind::Text(k.clone()));
        }
        let (rows, total) = page::<XcomRow>(
            &self.pool,
            "SELECT run_pk, task_id, map_index, key, value, size_bytes, updated_at",
            "FROM xcom",
            &f,
            " ORDER BY task_id, map_index, key",
            query.page,
        )
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(XcomRow::into_record)
                .collect::<Result<_>>()?,
            total_entries: total,
        })
    }

    async fn list_dag_versions(
        &self,
        dag_id: &DagId,
        page_request: PageRequest,
    ) -> Result<Page<DagVersionRecord>> {
        // NotFound for an unknown DAG, rather than an empty page.
        super::dags::get_dag(&self.pool, dag_id).await?;
        let mut f = Filter::default();
        f.cond("dag_id = ?", Bind::Text(dag_id.to_string()));
        let (rows, total) = page::<VersionRow>(
            &self.pool,
            "SELECT id, dag_id, version_number, spec_hash, spec_json, created_at",
            "FROM dag_version",
            &f,
            " ORDER BY version_number DESC",
            page_request,
        )
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(VersionRow::into_record)
                .collect::<Result<_>>()?,
            total_entries: total,
        })
    }

    async fn get_dag_version_by_number(
        &self,
        dag_id: &DagId,
        number: u32,
    ) -> Result<DagVersionRecord> {
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT id, dag_id, version_number, spec_hash, spec_json, created_at
             FROM dag_version WHERE dag_id = ?1 AND version_number = ?2",
        )
        .bind(dag_id.as_str())
        .bind(i64::from(number))
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::not_found(format!("version {number} of dag `{dag_id}`")))?
            .into_record()
    }

    async fn query_import_errors(
        &self,
        page_request: PageRequest,
    ) -> Result<Page<ImportErrorRecord>> {
        let (rows, total) = page::<ImportErrorRow>(
            &self.pool,
            "SELECT fileloc, timestamp, stacktrace",
            "FROM import_error",
            &Filter::default(),
            " ORDER BY fileloc",
            page_request,
        )
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                let timestamp = corrupt_row(
                    format!("import error of `{}`", r.fileloc),
                    time("timestamp", r.timestamp),
                )?;
                Ok(ImportErrorRecord {
                    fileloc: r.fileloc,
                    timestamp,
                    stacktrace: r.stacktrace,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            total_entries: total,
        })
    }

    async fn delete_run(&self, run: RunKey) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM dag_run WHERE id = ?1")
            .bind(run.0)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(run.to_string()));
        }
        let active: Vec<(String, i32, String)> = sqlx::query_as(
            "SELECT task_id, map_index, state FROM task_instance
             WHERE run_pk = ?1 AND state IN ('queued', 'running', 'restarting')
             ORDER BY task_id, map_index",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await?;
        if !active.is_empty() {
            let names: Vec<String> = active
                .iter()
                .map(|(t, m, s)| {
                    if *m < 0 {
                        format!("`{t}` ({s})")
                    } else {
                        format!("`{t}`[{m}] ({s})")
                    }
                })
                .collect();
            return Err(StoreError::conflict(format!(
                "{run} has task instances with attempts in flight: {}; \
                 wait for them to end or mark them first",
                names.join(", ")
            )));
        }
        for sql in [
            "DELETE FROM xcom WHERE run_pk = ?1",
            "DELETE FROM task_instance_try WHERE run_pk = ?1",
            "DELETE FROM task_instance WHERE run_pk = ?1",
            "DELETE FROM dag_run WHERE id = ?1",
        ] {
            sqlx::query(sql).bind(run.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn grid_runs(&self, dag_id: &DagId, limit: u32) -> Result<Vec<GridRun>> {
        // Positional columns (a tuple), not `FromRow` by name: the grid is
        // polled, and looking columns up by name showed in its profile.
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, run_id, state, logical_date, run_after, start_date, end_date
             FROM dag_run WHERE dag_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(dag_id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, run_id, state, logical, run_after, start, end)| {
                let decoded = (|| {
                    Ok(GridRun {
                        key: RunKey(id),
                        state: parse("state", &state)?,
                        logical_date: time_opt("logical_date", logical)?,
                        run_after: time("run_after", run_after)?,
                        start_date: time_opt("start_date", start)?,
                        end_date: time_opt("end_date", end)?,
                        run_id: RunId(run_id),
                    })
                })();
                corrupt_row(format!("run #{id} of dag `{dag_id}`"), decoded)
            })
            .collect()
    }

    async fn grid_tis(&self, runs: &[RunKey]) -> Result<Vec<GridTi>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = runs.iter().map(|r| r.0).collect();
        // Every cell in one row, as one JSON array of arrays: a grid is
        // hundreds of task instances, and handing each row from SQLite's
        // worker thread to the caller cost more than SQLite's own work.
        let text: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(run_pk, task_id, map_index, state,
                                                try_number, start_date, end_date))
             FROM task_instance WHERE run_pk IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_text(&ids))
        .fetch_one(&self.pool)
        .await?;
        type Cell<'a> = (i64, String, i32, &'a str, i64, Option<i64>, Option<i64>);
        let cells: Vec<Cell<'_>> = serde_json::from_str(&text)
            .map_err(|e| StoreError::corrupt(format!("task instances of the grid: {e}")))?;
        let mut out = cells
            .into_iter()
            .map(|(run, task_id, map_index, state, try_number, start, end)| {
                let decoded = (|| -> std::result::Result<_, String> {
                    Ok((
                        parse::<TaskState>("state", state)?,
                        TryNumber(unsigned("try_number", try_number)?),
                        time_opt("start_date", start)?,
                        time_opt("end_date", end)?,
                    ))
                })();
                // The row's name only for an error: this runs for every cell.
                match decoded {
                    Ok((state, try_number, start_date, end_date)) => Ok(GridTi {
                        run: RunKey(run),
                        task_id: TaskId(task_id),
                        map_index: MapIndex(map_index),
                        state,
                        try_number,
                        start_date,
                        end_date,
                    }),
                    Err(e) => Err(StoreError::corrupt(format!(
                        "task instance `{task_id}`[{map_index}] of run #{run}: {e}"
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // json_group_array keeps no promised order: sort here.
        out.sort_unstable_by(|a, b| {
            (a.run, &a.task_id, a.map_index).cmp(&(b.run, &b.task_id, b.map_index))
        });
        Ok(out)
    }
}
