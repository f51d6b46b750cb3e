//! The query parameters every listing shares: `limit`, `offset` and
//! `order_by` (a field name, `-` in front for descending, as in Airflow).

use crate::extract::QueryArgs;
use crate::problem::Problem;
use pave_store::{Order, PageRequest, SortDir};

/// The most entries one page may hold (Airflow's `maximum_page_limit`).
pub const MAX_LIMIT: u32 = 1000;

/// The parameters of paging and ordering, for `QueryArgs::only`.
pub const PAGING: [&str; 3] = ["limit", "offset", "order_by"];

/// `limit` (1..=1000, default 100) and `offset` (default 0).
pub fn page(q: &QueryArgs) -> Result<PageRequest, Problem> {
    let limit = q
        .parse::<u32>("limit", "a whole number from 1 to 1000")?
        .unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::bad_request(format!(
            "query parameter `limit`: {limit} is out of range; use 1 to {MAX_LIMIT}"
        ))
        .with_field("limit"));
    }
    let offset = q
        .parse::<u64>("offset", "a whole number of at least 0")?
        .unwrap_or(0);
    Ok(PageRequest { limit, offset })
}

/// `order_by`: one of `fields` by name, `-name` for descending.
pub fn order<F: Copy>(
    q: &QueryArgs,
    fields: &[(&str, F)],
    default: Order<F>,
) -> Result<Order<F>, Problem> {
    let Some(text) = q.text("order_by")? else {
        return Ok(default);
    };
    let (dir, name) = match text.strip_prefix('-') {
        Some(rest) => (SortDir::Desc, rest),
        None => (SortDir::Asc, text),
    };
    fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| Order { field: *f, dir })
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "query parameter `order_by`: cannot order by `{name}`; use one of {} (prefix `-` for descending)",
                fields.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
            .with_field("order_by")
        })
}

/// Parameter names: the endpoint's own plus paging.
pub fn with_paging<'a>(own: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&'a str> = own.to_vec();
    all.extend(PAGING);
    all
}
