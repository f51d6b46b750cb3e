//! Kubernetes resource quantities (`500m`, `1.5`, `64Gi`, `1e3`) as exact
//! milli-units, and the rules for extended resources such as `nvidia.com/gpu`.

use std::collections::BTreeMap;

/// A parsed quantity in thousandths of the base unit (cpu: millicores,
/// memory: millibytes), rounded up as the API server does.
pub(crate) type Milli = i128;

/// Parses a quantity string; `None` when it is not a valid quantity.
pub(crate) fn parse_milli(s: &str) -> Option<Milli> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (sign, rest) = match s.as_bytes()[0] {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().ok()?;
    let frac_len = u32::try_from(frac_part.len()).ok()?;
    // value = mantissa / 10^frac_len * num / den
    let (num, den): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            let exp: i32 = exp.parse().ok()?;
            if exp.unsigned_abs() > 18 {
                return None;
            }
            let p = 10i128.pow(exp.unsigned_abs());
            if exp >= 0 { (p, 1) } else { (1, p) }
        }
    };
    let top = mantissa.checked_mul(1000)?.checked_mul(num)?;
    let bottom = 10i128.checked_pow(frac_len)?.checked_mul(den)?;
    let value = (top + bottom - 1) / bottom; // round up, as resource.Quantity does
    Some(sign * value)
}

/// Formats milli-units the short way (`2`, `500m`), for messages.
pub(crate) fn format_milli(v: Milli) -> String {
    if v % 1000 == 0 {
        format!("{}", v / 1000)
    } else {
        format!("{v}m")
    }
}

/// True for resources that are not native to Kubernetes (`vendor.com/name`
/// outside `kubernetes.io/`): they cannot be overcommitted and must be integers.
pub(crate) fn is_extended(name: &str) -> bool {
    match name.split_once('/') {
        None => false,
        Some((domain, _)) => {
            !(domain == "kubernetes.io"
                || domain.ends_with(".kubernetes.io")
                || name.starts_with("requests."))
        }
    }
}

/// Requests of a pod (or free capacity of a node), by resource name.
pub(crate) type ResourceMap = BTreeMap<String, Milli>;

/// Adds `b` into `a`.
pub(crate) fn add_into(a: &mut ResourceMap, b: &ResourceMap) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

/// Parses a `{name: quantity}` map from the k8s types; invalid entries are skipped
/// (validation has rejected them already for pods).
pub(crate) fn to_map(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceMap {
    let mut out = ResourceMap::new();
    if let Some(m) = m {
        for (k, q) in m {
            if let Some(v) = parse_milli(&q.0) {
                out.insert(k.clone(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let cases = [
            ("1", 1000),
            ("500m", 500),
            ("1.5", 1500),
            ("0.1", 100),
            ("64Gi", 64 * (1i128 << 30) * 1000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("100n", 1),
            ("-1", -1000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_milli(s), Some(want), "{s}");
        }
        for bad in ["", "abc", "1.2.3", "1Xi", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn extended_resources() {
        assert!(is_extended("nvidia.com/gpu"));
        assert!(is_extended("nvidia.com/mig-1g.10gb"));
        assert!(!is_extended("cpu"));
        assert!(!is_extended("kubernetes.io/foo"));
        assert!(!is_extended("memory"));
    }
}
