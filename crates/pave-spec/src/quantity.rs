//! Durations, CPU and memory quantities: how the spec writes them (seconds
//! as numbers or `"5m"`-style strings; Kubernetes quantities such as `"8Gi"`,
//! `"500m"`) and how the canonical wire form prints them back.
//!
//! Every function here returns a message without a location; the reader
//! places it. None of them panics or overflows on any input.

use crate::node::Node;
use serde_json::Value;
use std::time::Duration;

/// The longest duration the spec accepts (100 years), far beyond any timeout.
const MAX_SECONDS: u64 = 100 * 366 * 24 * 3600;

/// Reads a duration: a number of seconds (`300`, `0.5`) or a string of
/// number-unit pairs (`"90s"`, `"5m"`, `"1h30m"`, `"2d"`, `"250ms"`).
pub(crate) fn parse_duration(node: &Node) -> Result<Duration, String> {
    match node {
        Node::Int(i) => {
            if *i < 0 {
                return Err(format!("must not be negative, got {i}"));
            }
            let secs = u64::try_from(*i).unwrap_or(u64::MAX);
            if secs > MAX_SECONDS {
                return Err(format!("{i} seconds is longer than 100 years"));
            }
            Ok(Duration::from_secs(secs))
        }
        Node::Float(f) => seconds_f64(*f),
        Node::Str(s) => parse_duration_str(s),
        other => Err(format!(
            "must be a number of seconds or a string such as \"5m\", got {}",
            other.kind()
        )),
    }
}

fn seconds_f64(f: f64) -> Result<Duration, String> {
    if !f.is_finite() {
        return Err(format!("must be a finite number of seconds, got {f}"));
    }
    if f < 0.0 {
        return Err(format!("must not be negative, got {f}"));
    }
    if f > MAX_SECONDS as f64 {
        return Err(format!("{f} seconds is longer than 100 years"));
    }
    // Rounding to whole nanoseconds keeps decimal fractions such as 0.1 exact.
    let nanos = (f * 1e9).round() as u128;
    let secs = (nanos / 1_000_000_000) as u64;
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

fn parse_duration_str(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad = || {
        format!(
            "`{s}` is not a duration; write seconds as a number (300) or number-unit pairs such as \"90s\", \"5m\", \"1h30m\", \"2d\""
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(f) = text.parse::<f64>() {
        return seconds_f64(f);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * factor;
    }
    seconds_f64(total)
}

/// The canonical wire form of a duration: whole seconds as an integer,
/// otherwise fractional seconds.
pub(crate) fn duration_value(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}

/// A decimal quantity `mantissa * 10^exp10 * 1024^exp1024` as Kubernetes writes them.
struct Quantity {
    mantissa: u128,
    exp10: i32,
    exp1024: u32,
}

fn parse_quantity(s: &str) -> Option<Quantity> {
    let text = s.trim();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut mantissa: u128 = 0;
    let mut frac_digits: i32 = 0;
    let mut digits = 0;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            if digits >= 30 {
                return None;
            }
            mantissa = mantissa * 10 + u128::from(c - b'0');
            digits += 1;
            if seen_dot {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    let suffix = &text[i..];
    let (exp10, exp1024) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            if !(-30..=30).contains(&e) {
                return None;
            }
            (e, 0)
        }
        _ => return None,
    };
    Some(Quantity {
        mantissa,
        exp10: exp10 - frac_digits,
        exp1024,
    })
}

/// The quantity times `10^extra10` as an integer: `Ok(None)` when it has a
/// fraction left, `Err` when it does not fit in u64.
fn quantity_to_int(q: &Quantity, extra10: i32) -> Result<Option<u64>, ()> {
    let mut n = q.mantissa;
    for _ in 0..q.exp1024 {
        n = n.checked_mul(1024).ok_or(())?;
    }
    let e = q.exp10 + extra10;
    if e >= 0 {
        for _ in 0..e {
            n = n.checked_mul(10).ok_or(())?;
        }
    } else {
        let mut d: u128 = 1;
        for _ in 0..(-e) {
            d = d.checked_mul(10).ok_or(())?;
        }
        if !n.is_multiple_of(d) {
            return Ok(None);
        }
        n /= d;
    }
    u64::try_from(n).map(Some).map_err(|_| ())
}

/// Reads memory: bytes as an integer, or a Kubernetes quantity (`"8Gi"`, `"512Mi"`, `"1G"`).
pub(crate) fn parse_memory(node: &Node) -> Result<u64, String> {
    match node {
        Node::Int(i) if *i >= 0 => u64::try_from(*i).map_err(|_| format!("{i} bytes is too large")),
        Node::Int(i) => Err(format!("must not be negative, got {i}")),
        Node::Float(f) if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19 => {
            Ok(*f as u64)
        }
        Node::Float(f) => Err(format!(
            "must be a whole number of bytes or a quantity such as \"8Gi\", got {f}"
        )),
        Node::Str(s) => {
            let bad = || {
                format!(
                    "`{s}` is not a memory quantity; write bytes (1073741824) or a Kubernetes quantity such as \"512Mi\", \"8Gi\" or \"1G\""
                )
            };
            let q = parse_quantity(s).ok_or_else(bad)?;
            match quantity_to_int(&q, 0) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(format!(
                    "`{s}` is not a whole number of bytes (`m` means milli, not mega); did you mean `{}Mi`?",
                    s.trim().trim_end_matches('m')
                )),
                Err(()) => Err(format!("`{s}` is too large")),
            }
        }
        other => Err(format!(
            "must be bytes or a quantity such as \"8Gi\", got {}",
            other.kind()
        )),
    }
}

/// Reads CPU in millicores: cores as a number (`2`, `0.5`) or a Kubernetes quantity (`"500m"`, `"2"`).
pub(crate) fn parse_cpu(node: &Node) -> Result<u64, String> {
    let finer = |shown: &str| format!("{shown} cores is finer than one millicore (1m)");
    match node {
        Node::Int(i) if *i >= 0 => u64::try_from(*i)
            .ok()
            .and_then(|c| c.checked_mul(1000))
            .ok_or_else(|| format!("{i} cores is too large")),
        Node::Int(i) => Err(format!("must not be negative, got {i}")),
        Node::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e15 => {
            let millis = (f * 1000.0).round();
            if (f * 1000.0 - millis).abs() > 1e-6 {
                return Err(finer(&f.to_string()));
            }
            Ok(millis as u64)
        }
        Node::Float(f) => Err(format!("must be a non-negative number of cores, got {f}")),
        Node::Str(s) => {
            let q = parse_quantity(s).ok_or_else(|| {
                format!(
                    "`{s}` is not a CPU quantity; write cores as a number (0.5, 2) or millicores such as \"500m\""
                )
            })?;
            match quantity_to_int(&q, 3) {
                Ok(Some(millis)) => Ok(millis),
                Ok(None) => Err(finer(&format!("`{s}`"))),
                Err(()) => Err(format!("`{s}` is too large")),
            }
        }
        other => Err(format!(
            "must be cores as a number or a quantity such as \"500m\", got {}",
            other.kind()
        )),
    }
}

/// The canonical wire form of memory: the largest exact binary unit, else bytes.
pub(crate) fn memory_value(bytes: u64) -> Value {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, size) in UNITS {
        if bytes > 0 && bytes.is_multiple_of(size) {
            return Value::from(format!("{}{suffix}", bytes / size));
        }
    }
    Value::from(bytes)
}

/// The canonical wire form of CPU: whole cores as a number, else `"NNNm"`.
pub(crate) fn cpu_value(millis: u64) -> Value {
    if millis.is_multiple_of(1000) {
        Value::from(millis / 1000)
    } else {
        Value::from(format!("{millis}m"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Node {
        Node::Str(text.to_owned())
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&Node::Int(300)),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration(&Node::Float(0.1)),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(parse_duration(&s("1h30m")), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(&s("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(&s("2d")), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration(&s("30")), Ok(Duration::from_secs(30)));
        assert!(parse_duration(&Node::Int(-1)).is_err());
        assert!(parse_duration(&s("5 parsecs")).is_err());
        assert!(parse_duration(&s("é")).is_err());
        assert!(parse_duration(&s("1e400")).is_err());
        assert!(parse_duration(&Node::Float(f64::NAN)).is_err());
        assert_eq!(
            duration_value(Duration::from_millis(1500)),
            Value::from(1.5)
        );
        assert_eq!(duration_value(Duration::from_secs(2)), Value::from(2));
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory(&s("8Gi")), Ok(8 << 30));
        assert_eq!(parse_memory(&s("512Mi")), Ok(512 << 20));
        assert_eq!(parse_memory(&s("1G")), Ok(1_000_000_000));
        assert_eq!(parse_memory(&s("1.5Gi")), Ok(3 << 29));
        assert_eq!(parse_memory(&s("1e3")), Ok(1000));
        assert_eq!(parse_memory(&Node::Int(1_073_741_824)), Ok(1 << 30));
        let err = parse_memory(&s("500m")).unwrap_err();
        assert!(err.contains("did you mean `500Mi`"), "{err}");
        assert!(parse_memory(&s("8GB")).is_err());
        assert!(parse_memory(&s("99999999999Ei")).is_err());
        assert_eq!(memory_value(8 << 30), Value::from("8Gi"));
        assert_eq!(memory_value(1000), Value::from(1000));
    }

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu(&Node::Float(0.5)), Ok(500));
        assert_eq!(parse_cpu(&Node::Int(2)), Ok(2000));
        assert_eq!(parse_cpu(&s("500m")), Ok(500));
        assert_eq!(parse_cpu(&s("1.5")), Ok(1500));
        assert!(parse_cpu(&s("0.0001")).is_err());
        assert!(parse_cpu(&Node::Int(-1)).is_err());
        assert_eq!(cpu_value(500), Value::from("500m"));
        assert_eq!(cpu_value(2000), Value::from(2));
    }
}
