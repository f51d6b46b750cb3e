//! Where a task runs: `executor`, `image`, `spot`, `pod_override`, and the
//! GPU parts of `resources` (`gpu_type`, `mig`), read and checked here so a
//! typo fails at parse time, naming the task and field, instead of leaving a
//! pod that never starts.

use crate::error::Diag;
use crate::node::Node;
use crate::read::Fields;
use pave_core::SpotPolicy;
use serde_json::Value;

/// The executors a task may name.
pub const EXECUTORS: &[&str] = &["local", "kubernetes"];

/// Top-level keys a `pod_override` may have (a partial Pod).
const POD_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

/// Reads `executor`: one of [`EXECUTORS`].
pub(crate) fn read_executor(f: &Fields<'_>, diag: &mut Diag) -> Option<String> {
    let name = f.string(diag, "executor")?;
    if EXECUTORS.contains(&name.as_str()) {
        return Some(name);
    }
    let path = f.path("executor");
    f.err(
        diag,
        "executor",
        format!("`{path}` names the unknown executor `{name}`"),
        Some(format!("use one of {}", EXECUTORS.join(", "))),
    );
    None
}

/// Reads `spot`: never, allow or prefer.
pub(crate) fn read_spot(f: &Fields<'_>, diag: &mut Diag) -> Option<SpotPolicy> {
    let s = f.string(diag, "spot")?;
    let policy = SpotPolicy::parse(&s);
    if policy.is_none() {
        let path = f.path("spot");
        f.err(
            diag,
            "spot",
            format!("`{path}` is `{s}`, not a spot policy"),
            Some(
                "use never (on-demand only), allow (spot or on-demand) or prefer (spot first)"
                    .into(),
            ),
        );
    }
    policy
}

/// Reads `image`, checked against the container image reference grammar.
pub(crate) fn read_image(f: &Fields<'_>, diag: &mut Diag) -> Option<String> {
    let image = f.string(diag, "image")?;
    match check_image(&image) {
        Ok(()) => Some(image),
        Err(why) => {
            let path = f.path("image");
            f.err(
                diag,
                "image",
                format!("`{path}` `{image}` is not a valid image reference (invalid reference format: {why})"),
                Some("write it as [registry/]repository[:tag][@sha256:digest], e.g. ghcr.io/acme/trainer:1.2".into()),
            );
            None
        }
    }
}

/// Reads `pod_override`: a mapping shaped like a (partial) Pod.
pub(crate) fn read_pod_override(f: &Fields<'_>, diag: &mut Diag) -> Option<Value> {
    let node = f.get("pod_override")?;
    let path = f.path("pod_override");
    let Node::Map(entries) = node else {
        f.wrong(
            diag,
            "pod_override",
            "a mapping (a partial Pod with `metadata` and/or `spec`)",
            node,
        );
        return None;
    };
    let mut ok = true;
    let mut report = |msg: String, diag: &mut Diag| {
        ok = false;
        f.err(
            diag,
            "pod_override",
            msg,
            Some("write a partial Pod, e.g. {spec: {containers: [{name: base, ...}]}}".into()),
        );
    };
    for (k, v) in entries {
        if !POD_KEYS.contains(&k.as_str()) {
            report(
                format!(
                    "`{path}` has the unknown key `{k}` (a Pod has {})",
                    POD_KEYS.join(", ")
                ),
                diag,
            );
        } else if (k == "metadata" || k == "spec") && !matches!(v, Node::Map(_)) {
            report(
                format!(
                    "`{path}.{k}` must be a mapping, got {} {}",
                    v.kind(),
                    v.show()
                ),
                diag,
            );
        }
    }
    let value = node.to_value();
    if let Some(spec) = value.get("spec") {
        for list in ["containers", "initContainers", "volumes", "tolerations"] {
            match spec.get(list) {
                None | Some(Value::Array(_)) => {}
                Some(other) => report(
                    format!("`{path}.spec.{list}` must be a list, got {other}"),
                    diag,
                ),
            }
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(items)) = spec.get(list) {
                for (i, c) in items.iter().enumerate() {
                    if c.get("name").and_then(Value::as_str).is_none() {
                        report(
                            format!(
                                "`{path}.spec.{list}[{i}]` has no `name` (containers are merged by name; the task runs in `base`)"
                            ),
                            diag,
                        );
                    }
                }
            }
        }
    }
    if let Some(Value::Object(meta)) = value.get("metadata") {
        for key in ["labels", "annotations"] {
            if let Some(Value::Object(m)) = meta.get(key) {
                for (k, v) in m {
                    if !v.is_string() {
                        report(
                            format!("`{path}.metadata.{key}.{k}` must be a string, got {v}"),
                            diag,
                        );
                    }
                }
            }
        }
    }
    ok.then_some(value)
}

/// Checks a MIG profile name such as `1g.10gb` or `3g.40gb` (NVIDIA's
/// `<compute slices>g.<memory>gb`, optionally with `+me`).
pub fn check_mig(profile: &str) -> Result<(), String> {
    let base = profile.strip_suffix("+me").unwrap_or(profile);
    let ok = base.split_once("g.").is_some_and(|(g, mem)| {
        !g.is_empty()
            && g.chars().all(|c| c.is_ascii_digit())
            && mem
                .strip_suffix("gb")
                .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{profile}` is not a MIG profile; profiles look like 1g.10gb, 2g.20gb, 3g.40gb, 7g.80gb"
        ))
    }
}

/// Checks an image reference (Docker's grammar, simplified): lowercase
/// path components separated by `/`, an optional registry host (with a
/// port) first, an optional `:tag` and `@algorithm:hex` digest.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = image.chars().find(|c| c.is_whitespace()) {
        return Err(format!("it contains whitespace ({c:?})"));
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && hex.len() >= 32
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        });
        if !ok {
            return Err(format!(
                "the digest `{d}` is not `sha256:<64 lowercase hex digits>`"
            ));
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!(
                "the tag `{t}` may only have letters, digits, `_`, `.` and `-` (at most 128)"
            ));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    if parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        let host_ok = first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !host_ok {
            return Err(format!("the registry `{first}` is not a host name"));
        }
        parts.remove(0);
    }
    for p in parts {
        if p.is_empty() {
            return Err(
                "it has an empty path component (`//` or a leading or trailing `/`)".into(),
            );
        }
        if p.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("the repository `{p}` must be lowercase"));
        }
        let ok = p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric())
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !ok {
            return Err(format!(
                "the repository `{p}` may only have lowercase letters, digits and separators (`.`, `_`, `-`) between them"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "python:3.12-slim",
            "ghcr.io/acme/trainer:2.0",
            "localhost:5000/x/y",
            "busybox",
            "nvcr.io/nvidia/pytorch:24.05-py3",
            "registry.invalid/trainer@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Python:3.12",
            "python:3.12 slim",
            "ghcr.io//trainer",
            "python::3",
            "trainer:",
            "acme/-trainer",
            "x@sha256:XYZ",
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mig_profiles() {
        for ok in ["1g.10gb", "3g.40gb", "7g.80gb", "1g.5gb+me"] {
            assert_eq!(check_mig(ok), Ok(()), "{ok}");
        }
        for bad in [
            "1g10gb",
            "1g.10GB",
            "g.10gb",
            "10gb",
            "1g.gb",
            "mig-1g.10gb",
        ] {
            assert!(check_mig(bad).is_err(), "{bad}");
        }
    }
}
