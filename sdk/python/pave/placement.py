"""Where a task runs: ``executor=``, ``image=``, ``spot=``, ``pod_override=``
and the GPU parts of ``resources`` (``gpu_type``, ``mig``), checked when the
DAG file is parsed so that a typo names the task and argument instead of
leaving a pod that never starts. Mirrors pave-spec's checks (docs/dag-spec.md).
"""

from __future__ import annotations

import re

from .exceptions import PaveSpecError

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any

EXECUTORS = ("local", "kubernetes")
SPOT_POLICIES = ("never", "allow", "prefer")
_POD_KEYS = ("apiVersion", "kind", "metadata", "spec")
_MIG = re.compile(r"^[0-9]+g\.[0-9]+gb(\+me)?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")


def check_executor(value: Any, task_id: str) -> str | None:
    if value is None:
        return None
    if value not in EXECUTORS:
        raise PaveSpecError(
            f"task `{task_id}`: executor={value!r} is not an executor pave runs; use one of {', '.join(EXECUTORS)}"
        )
    return value


def check_spot(value: Any, task_id: str) -> str | None:
    if value is None:
        return None
    if value is True:
        return "allow"
    if value is False:
        return "never"
    if value not in SPOT_POLICIES:
        raise PaveSpecError(
            f"task `{task_id}`: spot={value!r} is not a spot policy; use never (on-demand only), "
            "allow (spot or on-demand) or prefer (spot first)"
        )
    return value


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a valid image reference, or None."""
    if not image:
        return "it is empty"
    if any(c.isspace() for c in image):
        return "it contains whitespace"
    name, _, digest = image.partition("@")
    if digest and not _DIGEST.match(digest):
        return f"the digest `{digest}` is not `sha256:<hex>`"
    slash = name.rfind("/") + 1
    colon = name.rfind(":", slash)
    if colon >= 0:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            return f"the tag `{tag}` may only have letters, digits, `_`, `.` and `-`"
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if not _HOST.match(parts[0]):
            return f"the registry `{parts[0]}` is not a host name"
        parts = parts[1:]
    for p in parts:
        if any(c.isupper() for c in p):
            return f"the repository `{p}` must be lowercase"
        if not _COMPONENT.match(p):
            return f"the repository part `{p}` may only have lowercase letters, digits and separators"
    return None


def check_image(value: Any, task_id: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PaveSpecError(f"task `{task_id}`: image must be a string, got {value!r}")
    why = image_problem(value)
    if why:
        raise PaveSpecError(
            f"task `{task_id}`: image={value!r} is not a valid image reference (invalid reference format: {why}); "
            "write it as [registry/]repository[:tag], e.g. ghcr.io/acme/trainer:1.2"
        )
    return value


def check_pod_override(value: Any, task_id: str) -> dict[str, Any] | None:
    """A dict shaped like a partial Pod; a kubernetes-client ``V1Pod`` is converted."""
    if value is None:
        return None
    if hasattr(value, "to_dict") and hasattr(value, "attribute_map"):
        raise PaveSpecError(
            f"task `{task_id}`: pod_override must be a plain dict in Kubernetes' JSON form "
            "(pave does not import the kubernetes client); e.g. {'spec': {'containers': [{'name': 'base'}]}}"
        )
    if not isinstance(value, dict):
        raise PaveSpecError(
            f"task `{task_id}`: pod_override must be a dict (a partial Pod with `metadata` and/or `spec`), got {value!r}"
        )
    for key, sub in value.items():
        if key not in _POD_KEYS:
            raise PaveSpecError(f"task `{task_id}`: pod_override has the unknown key {key!r} (a Pod has {', '.join(_POD_KEYS)})")
        if key in ("metadata", "spec") and not isinstance(sub, dict):
            raise PaveSpecError(f"task `{task_id}`: pod_override[{key!r}] must be a dict, got {sub!r}")
    spec = value.get("spec") or {}
    for name in ("containers", "initContainers", "volumes", "tolerations"):
        if name in spec and not isinstance(spec[name], list):
            raise PaveSpecError(f"task `{task_id}`: pod_override['spec'][{name!r}] must be a list")
    for i, c in enumerate(spec.get("containers") or []):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise PaveSpecError(
                f"task `{task_id}`: pod_override['spec']['containers'][{i}] needs a 'name' "
                "(containers are merged by name; the task runs in 'base')"
            )
    return value


def check_gpu_resources(out: dict[str, Any], task_id: str) -> None:
    """Checks ``gpu_type`` and ``mig`` in already-translated resources."""
    mig = out.get("mig")
    if mig is not None and (not isinstance(mig, str) or not _MIG.match(mig)):
        raise PaveSpecError(
            f"task `{task_id}`: resources['mig']={mig!r} is not a MIG profile; profiles look like 1g.10gb, 3g.40gb"
        )
    if mig is not None and out.get("gpu"):
        raise PaveSpecError(
            f"task `{task_id}`: resources asks for a MIG slice ('mig') and whole GPUs ('gpu'); set one of them"
        )
    gpu_type = out.get("gpu_type")
    if gpu_type is not None:
        if not isinstance(gpu_type, str) or not gpu_type.strip():
            raise PaveSpecError(f"task `{task_id}`: resources['gpu_type'] must be a GPU product name such as 'H100'")
        if not out.get("gpu") and mig is None:
            raise PaveSpecError(
                f"task `{task_id}`: resources['gpu_type'] needs 'gpu' (how many GPUs of that type) or 'mig'"
            )
