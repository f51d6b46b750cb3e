//! XCom values as templates see them.
//!
//! pave's Python runtime stores a value that is not plain JSON (a tuple, a
//! datetime, a Decimal, a dataclass...) in Airflow 3's serde envelope
//! `{"__classname__": ..., "__version__": ..., "__data__": ...}`
//! (`sdk/python/pave/serde.py`), so that Python tasks pulling it get the
//! object back. A template has no Python objects: [`plain`] turns each
//! envelope into the plain value that renders like the object's `str()` in
//! Airflow where JSON can say it (datetimes, dates and timedeltas become
//! Python's text; Decimals, UUIDs and numpy scalars their number or text),
//! and into JSON otherwise (tuples and sets become lists, classes their
//! fields). docs/airflow-differences.md lists what renders differently.

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Timelike, Utc};
use serde_json::Value as Json;

const CLASSNAME: &str = "__classname__";
const DATA: &str = "__data__";

/// `value` with every serde envelope in it decoded (see the module docs).
pub fn plain(value: &Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(items.iter().map(plain).collect()),
        Json::Object(map) => match (map.get(CLASSNAME).and_then(Json::as_str), map.get(DATA)) {
            (Some(class), Some(data)) => decode(class, &plain(data)),
            _ => Json::Object(map.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        },
        other => other.clone(),
    }
}

/// One envelope of class `class` whose data is already decoded.
fn decode(class: &str, data: &Json) -> Json {
    match class {
        "datetime.datetime" | "pendulum.datetime.DateTime" => datetime(data)
            .map(Json::String)
            .unwrap_or_else(|| data.clone()),
        "datetime.timedelta" => data
            .as_f64()
            .map(|s| Json::String(timedelta(s)))
            .unwrap_or_else(|| data.clone()),
        // Tuples, sets, dates (ISO text), Decimals, UUIDs, time zones (their
        // name), numpy scalars, and the fields of dataclasses and the like.
        _ => data.clone(),
    }
}

/// Python's `str(datetime)`: `2026-01-02 03:04:05[.ffffff][+HH:MM]`. A
/// naive datetime is shown in UTC (Python would use the worker's zone).
fn datetime(data: &Json) -> Option<String> {
    let (secs, tz) = match data {
        Json::Object(m) => (m.get("timestamp")?.as_f64()?, m.get("tz")),
        other => (other.as_f64()?, None),
    };
    let whole = secs.floor();
    let micros = ((secs - whole) * 1e6).round() as u32;
    let at = DateTime::<Utc>::from_timestamp(whole as i64, micros.min(999_999) * 1000)?;
    let zone = tz.filter(|t| !t.is_null()).map(|t| match t {
        // The decoded tuple (name or offset, class, version, serialized).
        Json::Array(parts) => parts.first().cloned().unwrap_or(Json::Null),
        other => other.clone(),
    });
    let fraction = |nanos: u32| {
        if nanos == 0 {
            String::new()
        } else {
            format!(".{:06}", nanos / 1000)
        }
    };
    let Some(zone) = zone else {
        let naive = at.naive_utc();
        return Some(format!(
            "{}{}",
            naive.format("%Y-%m-%d %H:%M:%S"),
            fraction(naive.nanosecond())
        ));
    };
    let local: DateTime<FixedOffset> = match &zone {
        Json::Number(n) => at.with_timezone(&FixedOffset::east_opt(n.as_f64()? as i32)?),
        Json::String(name) => match name.as_str() {
            "UTC" | "utc" | "Etc/UTC" | "GMT" | "Z" | "" => at.fixed_offset(),
            name => {
                let tz: chrono_tz::Tz = name.parse().ok()?;
                let t = tz.from_utc_datetime(&at.naive_utc());
                t.with_timezone(&t.offset().fix())
            }
        },
        _ => at.fixed_offset(),
    };
    Some(format!(
        "{}{}{}",
        local.format("%Y-%m-%d %H:%M:%S"),
        fraction(local.nanosecond()),
        local.format("%:z")
    ))
}

/// Python's `str(timedelta)`: `[-]D day[s], ]H:MM:SS[.ffffff]`.
fn timedelta(total_seconds: f64) -> String {
    let micros_total = (total_seconds * 1e6).round() as i64;
    let days = micros_total.div_euclid(86_400_000_000);
    let rest = micros_total.rem_euclid(86_400_000_000);
    let (secs, micros) = (rest / 1_000_000, rest % 1_000_000);
    let clock = format!("{}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    let clock = if micros == 0 {
        clock
    } else {
        format!("{clock}.{micros:06}")
    };
    match days {
        0 => clock,
        1 | -1 => format!("{days} day, {clock}"),
        d => format!("{d} days, {clock}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(class: &str, version: u32, data: Json) -> Json {
        json!({"__classname__": class, "__version__": version, "__data__": data})
    }

    #[test]
    fn tuples_and_sets_become_lists_nested_too() {
        let v = envelope(
            "builtins.tuple",
            1,
            json!([1, envelope("builtins.set", 1, json!(["a"])), {"k": envelope("builtins.frozenset", 1, json!([]))}]),
        );
        assert_eq!(plain(&v), json!([1, ["a"], {"k": []}]));
    }

    #[test]
    fn datetimes_render_like_python_str() {
        // datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), as pave's serde stores it.
        let utc = envelope(
            "datetime.datetime",
            2,
            json!({"timestamp": 1767323045.0, "tz": envelope("builtins.tuple", 1, json!(["UTC", "pendulum.tz.timezone.FixedTimezone", 1, true]))}),
        );
        assert_eq!(plain(&utc), json!("2026-01-02 03:04:05+00:00"));
        let paris = envelope(
            "datetime.datetime",
            2,
            json!({"timestamp": 1767323045.25, "tz": envelope("builtins.tuple", 1, json!(["Europe/Paris", "zoneinfo.ZoneInfo", 1, true]))}),
        );
        assert_eq!(plain(&paris), json!("2026-01-02 04:04:05.250000+01:00"));
        let offset = envelope(
            "datetime.datetime",
            2,
            json!({"timestamp": 1767323045.0, "tz": envelope("builtins.tuple", 1, json!([7200, "pendulum.tz.timezone.FixedTimezone", 1, true]))}),
        );
        assert_eq!(plain(&offset), json!("2026-01-02 05:04:05+02:00"));
        let naive = envelope(
            "datetime.datetime",
            2,
            json!({"timestamp": 1767323045.0, "tz": null}),
        );
        assert_eq!(plain(&naive), json!("2026-01-02 03:04:05"));
    }

    #[test]
    fn timedeltas_dates_and_scalars() {
        assert_eq!(
            plain(&envelope("datetime.timedelta", 2, json!(3600.0))),
            json!("1:00:00")
        );
        assert_eq!(
            plain(&envelope("datetime.timedelta", 2, json!(90061.5))),
            json!("1 day, 1:01:01.500000")
        );
        assert_eq!(
            plain(&envelope("datetime.timedelta", 2, json!(-1.0))),
            json!("-1 day, 23:59:59")
        );
        assert_eq!(
            plain(&envelope("datetime.date", 2, json!("2026-01-02"))),
            json!("2026-01-02")
        );
        assert_eq!(
            plain(&envelope("decimal.Decimal", 1, json!(1.5))),
            json!(1.5)
        );
        assert_eq!(plain(&envelope("numpy.int64", 1, json!(7))), json!(7));
        assert_eq!(
            plain(&envelope(
                "my.module.Point",
                0,
                json!({"x": 1, "at": envelope("datetime.date", 2, json!("2026-01-02"))})
            )),
            json!({"x": 1, "at": "2026-01-02"})
        );
    }

    #[test]
    fn plain_json_and_look_alikes_are_unchanged() {
        let v = json!({"a": [1, 2.5, "x", null, true], "__classname__": "no data field"});
        assert_eq!(plain(&v), v);
    }
}
