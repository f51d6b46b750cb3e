"""``python -m pave.zygote``: a pre-forked interpreter for one DAG file.

Starting ``python3 -m pave.runtime`` costs an interpreter start-up, the SDK's
imports and the DAG file's import for every task attempt. A zygote pays them
once: it imports the DAG file (and the runtime's own modules), then listens
on a unix socket and forks one child per attempt. The child is a fresh copy
of that state (so what one task does to module state never reaches the
next), puts itself in a new session, takes the attempt's environment,
working directory and stdio, and runs ``pave.runtime.run`` in-process. The
next attempt's child is forked ahead of it (a *spare*, set up and waiting on
a socket pair), so a request costs a hand-over rather than a fork.

Who uses it: the supervisor of an attempt (``pave-supervise``, Rust,
``crates/pave-executor/src/zygote.rs``). The supervisor stays the owner of
the attempt (claim, log, timeout, result); the zygote only replaces
``fork + exec python``. Anything that goes wrong before the fork makes the
supervisor run ``python3 -m pave.runtime`` as before, so correctness never
depends on the zygote. docs/python-runtime.md describes the design. The
scheduler itself may also send a *supervised* request (below): then the
zygote is the attempt's supervisor.

Start-up (argv: ``--socket PATH --lock PATH --idle SECS --attempt-vars
A,B,PREFIX_* [--spec] [--import-memory-kib N]``; environment: the attempts' environment less the variables
that differ per attempt, also sent as a JSON object on stdin, which tells
what a wrapper of the interpreter such as a pyenv shim changed; working
directory: the attempts'):
the started process forks and exits at once (the supervisor reaps it), the
grandchild calls ``setsid`` and is the zygote. On its stdout (a pipe to the
supervisor) it writes JSON lines: ``{"pid": N}``, then ``{"ready": true}``
once it listens, or ``{"unusable": "why"}`` and exits: the DAG file failed
to import, started threads, opened a GPU device, or read a per-attempt
variable (``--attempt-vars``) at import time. With ``--spec`` (``pave dags
test`` starts the zygote before the run and lets it parse the file, so one
interpreter imports it instead of two), a ``{"spec": "TEXT"}`` line comes
before those, TEXT being what ``python -m pave.parse`` prints for the file;
it is left out when the import or the spec failed (the caller then runs
``pave.parse``, whose report names the error). ``--import-memory-kib``
caps the address space during the import only (the DAG processor's limit
on a parse; the forked tasks do not inherit it). Its stderr is its own log.

Protocol on the socket, one connection per attempt:

- request: a 4-byte big-endian length, then that many bytes of JSON
  ``{"argv": [...], "env": {...}, "cwd": "..."}``; the first bytes carry two
  file descriptors (``SCM_RIGHTS``): the task's stdout and stderr. ``env``
  is the attempt's whole environment, or only its per-attempt variables
  when the request adds ``"base_env_sha1": HEX``, the ``env_digest`` of
  the others (what pave's executor sends: the zygote then neither decodes
  nor compares some 40 variables per attempt, whose pages its live children
  share, so that every write to them is a copy).
- answers, JSON lines: ``{"pid": N}`` once the child is in its own session
  (its pid is also its process group and session id), then
  ``{"exit": {"type": "code", "code": C} | {"type": "signal", "signal": S},
  "maxrss_kib": K}`` when it has ended: as soon as a child that exits the
  interpreter's way says so (its exit status and peak memory, on the pipe
  or socket it set up on), so that the kernel's taking down of its address
  space (a millisecond or more on a slow machine) is not on the way to the
  next task; else, and always for an attempt with GPUs (a GPU is free once
  its process is gone), when it has been reaped (``wait4``). Or, instead of
  ``pid``, ``{"refused": "why", "retry": bool}``: nothing was forked
  (``retry``: the DAG file or a module it imported changed, so this zygote
  stops accepting and a new one should be started).
- if the supervisor's end of the connection closes while the child runs,
  the supervisor died: the zygote SIGKILLs the child's process group and
  session, as the scheduler would.

A *supervised* request (sent by the scheduler itself) makes the zygote the
attempt's supervisor. Its JSON adds ``"supervise": {"claim": PATH, "result":
PATH, "timeout_ms": N | null, "grace_ms": N, "gpu_ids": [...]}`` and it
passes one fd, the attempt's log, which the child gets as stdout and
stderr. After the same checks, the zygote takes the claim (created
exclusively, complete or absent: ``{"claimed_by": "supervisor", "pid": ZYGOTE,
"start_ticks", "started_at", "gpu_ids", "zygote": true}``); held by someone
else, it answers ``{"claimed": true}`` and runs nothing. Then ``{"pid": N}``
as above. The timeout counts from the hand-over (or fork): SIGTERM to the
task's group and session, ``grace_ms`` later SIGKILL. When the task is
reaped the zygote links the result file into place (the fields of the
plain supervisor's, ``last_line`` null), then sends the exit line (with
``"result_error"`` if the file could not be written). The connection is
no lease: the task outlives its sender, and the zygote, which never exits
while a child runs, writes its result. Should nothing run once the claim
is taken (no fork, the child never set up), the result says ``not_run``
and the answer is ``{"refused": why, "retry": false, "not_run": true}``.

The zygote is single-threaded (never fork from a process with threads): one
``selectors`` loop over the listening socket, the connections, the pipes
on which new children say they are set up (the pid is reported then; the
loop never blocks on one child, so launches overlap on a busy machine) and
later how they end, and the SIGCHLD wake-up fd. It exits after ``--idle``
seconds without attempts, when its socket path is removed or taken over,
or once a change of its files made it stop accepting and its last child
ended. Children die with it (``PR_SET_PDEATHSIG``), so an attempt never
outlives both its supervisor and its zygote.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import gc
import heapq
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import sysconfig
import threading
import time

# `macros` is imported by the runtime lazily: importing it here once saves
# every child the time. (The runtime's API client speaks HTTP over a plain
# socket, so no `http.client` is needed.)
from . import macros, runtime  # noqa: F401
from .loader import load_dag_file

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


#: How long the zygote waits for a new child to set itself up.
CHILD_SETUP_TIMEOUT = 10.0
#: Most bytes of one request (the environment is in it).
MAX_REQUEST = 4 * 1024 * 1024
#: File descriptors passed with a request: stdout, stderr.
PASSED_FDS = 2
#: File descriptors passed with a supervised request: the attempt's log
#: (the child's stdout and stderr).
SUPERVISED_FDS = 1
#: SIGTERM to SIGKILL of a supervised attempt when the request names none.
DEFAULT_GRACE_MS = 5000

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_SIGCHLD, _SIGKILL, _SIG_DFL = int(signal.SIGCHLD), int(signal.SIGKILL), int(signal.SIG_DFL)
try:
    from _signal import signal as _c_signal
except ImportError:  # not CPython
    _c_signal = signal.signal
#: Above any descriptor a child closes (``Zygote._close_zygote_fds``; the
#: zygote's descriptors are its connections and a few more, numbered from
#: the lowest free one). Bounded, should ``os.closerange`` have no
#: ``close_range`` to call and close the numbers one by one.
_MAX_FD = min(os.sysconf("SC_OPEN_MAX"), 1 << 16)


def _open_fds() -> set[int]:
    """This process's open descriptors above stdio."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.fstat(fd)  # the folder's own descriptor is gone by now
            except OSError:
                continue
            fds.add(fd)
    return fds


class Unusable(Exception):
    """This DAG file cannot be served by a zygote; the message says why."""


def _fingerprint(path: str) -> tuple[int, int, int, int] | None:
    """What changes when a file is edited or replaced; ``None`` when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def env_digest(env: dict[str, str]) -> str:
    """The digest of an environment that a request may send instead of the
    variables themselves (``base_env_sha1``): SHA-1, in hex, of each
    variable in order of name (by code point), as ``NAME NUL VALUE NUL`` in
    UTF-8. ``crates/pave-executor/src/handover.rs`` computes the same. (No
    secret is at stake: it catches an environment that differs. SHA-1
    because the loader has ``_sha1`` loaded already: another extension
    module is five more mappings for every fork to copy.)"""
    from .loader import _sha1

    h = _sha1()
    for name in sorted(env):
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + env[name].encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _is_attempt_var(name: str, attempt_vars: set[str], prefixes: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of the variables that differ per attempt."""
    return name in attempt_vars or (bool(prefixes) and name.startswith(prefixes))


class _RecordingEnviron(os._Environ):  # type: ignore[name-defined,misc]
    """``os.environ`` while the DAG file is imported: the same variables (it
    shares ``os.environ``'s storage), but it notes every lookup of a
    per-attempt variable, whose value the zygote does not have."""

    def __init__(self, real: Any, attempt_vars: set[str], prefixes: tuple[str, ...]) -> None:
        self.__dict__.update(real.__dict__)
        self._pave_attempt_vars = attempt_vars
        self._pave_prefixes = prefixes
        self.pave_read: set[str] = set()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) and _is_attempt_var(key, self._pave_attempt_vars, self._pave_prefixes):
            self.pave_read.add(key)
        return super().__getitem__(key)


def _gpu_device_open() -> bool:
    """Whether this process holds a GPU device open (CUDA was initialised):
    a forked child could not use it."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(("/dev/nvidia", "/dev/dri/", "/dev/kfd")):
            return True
    return False


def _tell_conn(conn: _Conn, message: dict[str, Any]) -> bool:
    """One JSON line to a supervisor (at most 5 s); False if it is gone.

    A line fits the empty buffer of the supervisor's socket, so on a
    non-blocking socket it goes in one ``send``; only what that could not
    send waits, blocking with a timeout (two mode switches and a ``poll``
    per line otherwise, twice per attempt). The socket is left blocking
    with the timeout only when it had to wait."""
    data = json.dumps(message).encode() + b"\n"
    sock = conn.sock
    try:
        if sock.gettimeout() == 0.0:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data):
                return True
            data = data[sent:]
        sock.settimeout(5.0)
        sock.sendall(data)
        return True
    except OSError:
        return False


def _take_stdio(stdout_fd: int, stderr_fd: int) -> None:
    """Make the attempt's stdout and stderr this process's, stdin /dev/null."""
    null = os.open(os.devnull, os.O_RDONLY)
    for src, dst in ((null, 0), (stdout_fd, 1), (stderr_fd, 2)):
        os.dup2(src, dst)
    for fd in {null, stdout_fd, stderr_fd} - {0, 1, 2}:
        os.close(fd)


def _kill_spare(pid: int) -> None:
    """SIGKILL a spare that never got an attempt (it started nothing)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _kill_session(sid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``sid`` and every process of session ``sid``."""
    try:
        os.killpg(sid, sig)
    except OSError:
        pass
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[3]) == sid:  # field 6: session
                os.kill(pid, sig)
        except (OSError, ValueError, IndexError):
            continue


def _rfc3339(t: float) -> str:
    """``t`` (seconds since the epoch) as RFC 3339, UTC, with microseconds."""
    secs = int(t)
    micros = min(999_999, max(0, int((t - secs) * 1_000_000)))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%06dZ" % micros


def _secs(ms: float) -> str:
    """Milliseconds as seconds, written as Rust writes an ``f64`` (``1.2``, ``60``)."""
    secs = ms / 1000
    return str(int(secs)) if secs == int(secs) else repr(secs)


def _start_ticks() -> int | None:
    """Field 22 of ``/proc/self/stat`` (the start time in clock ticks), so that
    a reused pid is not mistaken for this process; ``None`` if unreadable."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and parentheses: the
        # fields start after the last ')', with field 3 at index 0.
        return int(stat[stat.rindex(b")") + 1:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _create_exclusive(path: str, data: bytes) -> None:
    """Create ``path`` with ``data`` as its content, complete or not at all,
    unless it exists (``FileExistsError``): the content goes to an unnamed
    file of the folder (``O_TMPFILE``) that is then linked to the name, as
    ``crates/pave-executor/src/claim.rs`` does; where the filesystem has no
    ``O_TMPFILE``, through a named temporary file."""
    folder = os.path.dirname(path) or "."
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if not tmpfile:
        _create_via_temporary(path, data)
        return
    try:
        fd = os.open(folder, tmpfile | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        _create_via_temporary(path, data)
        return
    try:
        _write_all(fd, data)
        try:
            # `linkat(..., AT_SYMLINK_FOLLOW)`: without a `src_dir_fd`, CPython
            # (before 3.13 at least) calls `link(2)`, which does not follow the
            # magic link and fails with EXDEV. The path is absolute, so the
            # kernel ignores the descriptor given as `src_dir_fd`.
            os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
        except FileExistsError:
            raise
        except OSError as e:
            # No /proc, or a kernel that does not link the unnamed file:
            # the named temporary file does the same.
            if e.errno != errno.EXDEV and (e.errno != errno.ENOENT or os.path.isdir("/proc/self/fd")):
                raise
            _create_via_temporary(path, data)
    finally:
        os.close(fd)


_temporary_seq = 0


def _create_via_temporary(path: str, data: bytes) -> None:
    """``_create_exclusive`` through a private temporary file, hard-linked to
    ``path`` (``link`` fails with ``EEXIST`` if the name exists), then removed."""
    global _temporary_seq
    _temporary_seq += 1
    tmp = f"{path}.tmp.{os.getpid()}.{_temporary_seq}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _log_to_task(pid: int, line: str) -> None:
    """Append ``line`` to the log of the task ``pid`` (its stderr, when that is
    a regular file), as the plain supervisor notes a timeout in the log. The
    zygote keeps no descriptor of a supervised attempt's log: this reopens it
    through ``/proc`` on the rare path that needs it."""
    try:
        fd = os.open(f"/proc/{pid}/fd/2",
                     os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(fd).st_mode & 0o170000 == 0o100000:  # S_ISREG
            _write_all(fd, line.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


#: The longest word a child says about its end: its line and its XComs.
MAX_TOLD = 256 + runtime.DEFERRED_XCOM_MAX + 64


def _told_complete(buf: bytes) -> bool:
    """Whether ``buf`` holds a child's whole word about its end (or more than
    any word, or something that is none: nothing more is read then)."""
    if len(buf) > MAX_TOLD:
        return True
    line, nl, rest = buf.partition(b"\n")
    if not nl:
        return len(line) > 256
    words = line.split()
    if len(words) != 5:
        return True
    try:
        size = int(words[4])
    except ValueError:
        return True
    return len(rest) >= size or size > MAX_TOLD


def _parse_told(buf: bytes) -> tuple[int, int, int, dict[str, Any] | None] | None:
    """A child's word about its end (``Child.tell_end``): its pid, exit status,
    peak memory (KiB) and the XComs that go with the end; None if ``buf`` is
    not such a word."""
    line, _, rest = buf.partition(b"\n")
    words = line.split()
    if len(words) not in (4, 5) or words[0] != b"e":
        return None
    try:
        sender, code, peak = (int(w) for w in words[1:4])
        size = int(words[4]) if len(words) == 5 else 0
    except ValueError:
        return None
    if len(rest) != size:
        return None
    xcoms = None
    if size:
        try:
            xcoms = json.loads(rest)
        except ValueError:
            return None
        if not isinstance(xcoms, dict) or code != 0:
            return None
    return sender, code, peak, xcoms


class _Supervision:
    """What a supervised request asks the zygote to do for its attempt (it
    holds the claim, enforces the timeout, writes the result), and how that
    went."""

    def __init__(self, claim: str, result: str, timeout_ms: float | None, grace_ms: float,
                 gpu_ids: list[int]) -> None:
        self.claim = claim
        self.result = result
        self.timeout_ms = timeout_ms
        self.grace_ms = grace_ms
        self.gpu_ids = gpu_ids
        #: When the attempt was handed over or forked (``time.time()``, ``time.monotonic()``).
        self.started_at = 0.0
        self.started_mono = 0.0
        self.timed_out = False
        self.notes: list[str] = []

    @staticmethod
    def parse(value: Any) -> _Supervision | str:
        """The request's ``supervise`` object, or why it is not valid."""
        if not isinstance(value, dict):
            return "supervise is not an object"
        paths = []
        for key in ("claim", "result"):
            path = value.get(key)
            if not isinstance(path, str) or not os.path.isabs(path):
                return f"supervise.{key} is not an absolute path"
            paths.append(path)
        numbers: list[float | None] = []
        for key, default in (("timeout_ms", None), ("grace_ms", DEFAULT_GRACE_MS)):
            number = value.get(key)
            if number is None:
                number = default
            elif isinstance(number, bool) or not isinstance(number, (int, float)) or not number >= 0:
                return f"supervise.{key} is not a number of milliseconds"
            numbers.append(number)
        gpu_ids = value.get("gpu_ids") or []
        if not isinstance(gpu_ids, list) or not all(isinstance(g, int) and not isinstance(g, bool)
                                                    for g in gpu_ids):
            return "supervise.gpu_ids is not a list of integers"
        return _Supervision(paths[0], paths[1], numbers[0], float(numbers[1] or 0), gpu_ids)


def _bindable(path: str) -> tuple[str, int | None]:
    """A name for ``path`` that fits in ``sun_path`` (107 bytes): the path
    itself, or ``/proc/self/fd/N/NAME`` through an fd of its folder (the
    fd is returned, to be closed after ``bind``)."""
    if len(os.fsencode(path)) <= 107:
        return path, None
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


class _Conn:
    """One supervisor's connection: its request while it arrives, then its child."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.fds: list[int] = []
        self.pid: int | None = None
        #: While its child sets itself up: the read end of the pipe on which
        #: it says so (``b"k"``), and until when the zygote waits for that.
        self.setup_fd = -1
        self.setup_deadline = 0.0
        #: Once it is set up: the read end of the channel on which the child
        #: says how it ends (``Child.exit``), until it says so or is reaped.
        self.end_fd = -1
        #: What has come of the child's word on ``end_fd`` so far.
        self.end_buf = b""
        #: The child's word, once read (``_parse_told``): status, peak
        #: memory and the XComs that go with the end (or None).
        self.told: tuple[int, int, dict[str, Any] | None] | None = None
        #: The attempt has GPUs: its end is the reap, not the child's word.
        self.gpus = False
        #: A supervised request's (see ``_Supervision``); ``None`` for a
        #: supervisor's request.
        self.supervise: _Supervision | None = None

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


class _EnvPlan:
    """How a child turns the zygote's environment into its attempt's, worked
    out once in the zygote so that a child touches only the variables that
    differ (reading or rebuilding all of ``os.environ`` copies pages of it
    and allocates a few hundred objects in every task).

    An attempt's environment is the zygote's launch environment (checked
    equal, less the per-attempt variables) plus its per-attempt variables;
    the child's must then be redone as a fresh interpreter's would be: what
    the interpreter's wrapper and the DAG file's import changed (``fixed``:
    name to value, ``None`` for removed) already holds in the zygote. So a
    child sets the request's per-attempt variables that the zygote lacks or
    has otherwise, and removes the ones (``held``) the zygote has and the
    request does not. The attempt's context (``PAVE_TASK_CONTEXT``) is never
    set: the runtime takes it from the request (``run_env``) and would only
    take it out of ``os.environ`` again, so that the task's subprocesses do
    not inherit it."""

    def __init__(self, base_env: dict[str, str], changes: list[tuple[dict[str, str], list[str]]],
                 environ: dict[str, str]) -> None:
        fixed: dict[str, str | None] = {}
        for changed, removed in changes:
            fixed.update(changed)
            fixed.update(dict.fromkeys(removed))
        self.base_env = base_env
        self.fixed = fixed
        self.held = {k: v for k, v in environ.items() if k not in base_env and k not in fixed}
        self.last: dict[str, Any] = {}
        #: The variables ``runtime.run`` reads that a request cannot change
        #: (with their values in the attempt's environment), and those it sets.
        self.run_fixed: dict[str, str] = {}
        self.run_from_request: list[str] = []
        for name in runtime.RUN_VARS:
            if name in fixed:
                self.run_fixed[name] = fixed[name] or ""
            elif name in base_env:
                self.run_fixed[name] = base_env[name]
            else:
                self.run_from_request.append(name)

    def apply(self, env: dict[str, Any]) -> None:
        """Make ``os.environ`` the attempt's, whose request environment is ``env``."""
        current = os.environ
        base, fixed, held = self.base_env, self.fixed, self.held
        for name, value in env.items():
            if name in base or name in fixed or name == runtime.CONTEXT_ENV:
                continue  # as in the zygote; the context goes to the runtime only
            if held.get(name) != value:
                current[str(name)] = str(value)
        for name in held:
            if name not in env or name == runtime.CONTEXT_ENV:
                current.pop(name, None)

    def run_env(self, env: dict[str, Any]) -> dict[str, str]:
        """What ``runtime.run`` reads, as the attempt's environment has it
        (``os.environ`` less the context, once ``apply`` made it the
        attempt's): read from the request rather than back from
        ``os.environ``, whose machinery a task would otherwise run (and
        whose objects' pages it would copy) for nothing."""
        out = dict(self.run_fixed)
        for name in self.run_from_request:
            value = env.get(name)
            out[name] = "" if value is None else str(value)
        return out

    def keep(self, env: dict[str, Any]) -> None:
        """In the zygote, once the attempt whose request environment is
        ``env`` has its child: take into the zygote's own environment (and
        ``held``) the per-attempt variables this attempt and the one before
        had alike, so that the next children with those values set none.
        Most are the same for every instance of a mapped task and every
        task of a run (the run's and DAG's ids, the API's address, the try
        number), and each one a child sets cost it some six pages; the
        ones new with every attempt (its token, its context) stay the
        child's to set, not worth the zygote's own writes. Children forked
        earlier keep the environment and plan they were forked with."""
        last, self.last = self.last, env
        base, fixed, held = self.base_env, self.fixed, self.held
        for name, value in env.items():
            if name in base or name in fixed or held.get(name) == value or last.get(name) != value \
                    or name == runtime.CONTEXT_ENV:
                continue
            os.environ[str(name)] = str(value)
            held[name] = value


class Child:
    """What a forked child runs once it is on its own: the attempt."""

    def __init__(self, request: dict[str, Any], dags: list[Any], replay: tuple[bytes, bytes],
                 env_plan: _EnvPlan, end_fd: int = -1) -> None:
        self.request = request
        self.dags = dags
        self.replay = replay
        self.env_plan = env_plan
        #: Where the child tells the zygote its end (``exit``); -1: nowhere.
        self.end_fd = end_fd

    def run(self) -> int:
        """Take the attempt's working directory and environment, replay what
        importing the DAG file printed (a plain ``python -m pave.runtime``
        prints it in every attempt's log), and run the attempt."""
        req = self.request
        env = req.get("env") or {}
        self.env_plan.apply(env)
        cwd = req.get("cwd")
        if cwd:
            os.chdir(cwd)
        sys.argv = [runtime.__file__ or "pave.runtime"]
        out, err = self.replay
        if out:
            os.write(1, out)
        if err:
            os.write(2, err)
        if self.end_fd >= 0 and req.get("supervise") is not None:
            # The zygote writes the result file: the return value goes in it.
            runtime.deferred_xcoms = {}
        return runtime.run(self.env_plan.run_env(env), dags=self.dags, disposable=True)

    def exit(self, code: int) -> None:
        """End the child as the interpreter would at exit, as far as a task
        can tell: wait for its non-daemon threads, run the atexit handlers,
        flush stdio; but skip the teardown of every module, which in a
        forked child would touch (and so copy) most shared pages."""
        # Only when a non-daemon thread was started (each adds its lock to
        # `_shutdown_locks`; CPython 3.13 has no such set: always then): on
        # the way out of a task that started none it would only touch, and
        # so copy, a dozen pages of `threading`.
        if getattr(threading, "_shutdown_locks", True):
            try:
                threading._shutdown()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 -- as the interpreter, go on exiting
                pass
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        self.tell_end(code)
        os._exit(code)

    def tell_end(self, code: int) -> None:
        """Tell the zygote this attempt's end before the exit (``e PID STATUS
        MAXRSS_KIB``): nothing of the task runs any more, and the zygote need
        not wait for the kernel to take the process down. Its peak memory
        is what ``wait4`` would report: its own or its reaped children's.
        After a success, the XComs that go with the end
        (``runtime.deferred_xcoms``) follow: ``e PID 0 MAXRSS_KIB SIZE``,
        then SIZE bytes of a JSON object, key to value."""
        if self.end_fd < 0:
            return
        try:
            peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            word = b"e %d %d %d" % (os.getpid(), code & 0xFF, peak)
            xcoms = runtime.deferred_xcoms
            if code == 0 and xcoms:
                payload = ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in xcoms.items()) + "}").encode()
                word += b" %d\n" % len(payload) + payload
                os.set_blocking(self.end_fd, True)  # the zygote's end of the pipe is the non-blocking one
            else:
                word += b"\n"
            _write_all(self.end_fd, word)
        except (OSError, ValueError):
            pass


class _Spare:
    """A child forked ahead of its attempt, set up and waiting for it on a
    socket pair (see ``Zygote._fork_spare``)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock


# Runs of a no-op task of pave's own that warm the runtime before the first fork.
WARM_RUNS = 20


class _WarmUpApi:
    """A loopback stand-in for the execution API during the warm-up: a
    thread that answers every request with 204, so that a warm-up task's
    XCom push runs the client's whole path (encoding, the connection, the
    HTTP exchange) before the zygote forks. Closed (its thread joined)
    before anything forks."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/execution/v1"
        self.answered = 0
        self.thread = threading.Thread(target=self._serve, name="pave-warm-up-api", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the warm-up is over
            with conn, conn.makefile("rb") as f:
                while self._answer(conn, f):
                    pass

    def _answer(self, conn: socket.socket, f: Any) -> bool:
        """Read one request (its head, then its Content-Length of body) and
        answer 204; False once the client closed the connection."""
        line = f.readline(65536)
        if not line:
            return False
        length = 0
        while line not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            line = f.readline(65536)
        f.read(length)
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.answered += 1
        return True

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)


def _warm_runtime() -> int:
    """Run two tasks of pave's own through ``runtime.run`` a few times each,
    so that the interpreter has specialised the runtime's code before the
    zygote forks: CPython (3.11+) rewrites a function's bytecode in place
    while it warms up, so a child running cold code writes to, and so
    copies, the pages of every code object it runs (measured: ~75 fewer
    page faults and ~0.25 ms less CPU per child). One returns None; the
    other returns a number, which it pushes as its XCom to a stand-in of
    the API on loopback (``_WarmUpApi``), then keeps for its end as a
    supervised child does (``runtime.deferred_xcoms``). Nothing of the DAG
    file runs and nothing is printed. Returns the runs that succeeded; any
    failure only means a colder start."""
    from .dag import DAG, _registered
    from .decorators import task

    warm_id = "__pave_warm_up__"
    try:
        with DAG(dag_id=warm_id, schedule=None) as warm:
            @task(task_id="noop")
            def noop() -> None:
                return None

            @task(task_id="value")
            def value() -> int:
                return 1

            noop()
            value()
    except Exception:  # noqa: BLE001 -- an optimisation only
        return 0
    finally:
        # Not one of the DAG file's DAGs.
        _registered[:] = [d for d in _registered if d.dag_id != warm_id]
    when = "2026-01-01T00:00:00+00:00"
    context = json.dumps({"dag_id": warm_id, "run_id": f"manual__{when}", "task_id": "noop", "map_index": -1,
                          "try_number": 1, "logical_date": when, "data_interval_start": when,
                          "data_interval_end": when, "ds": "2026-01-01", "ds_nodash": "20260101", "ts": when,
                          "run_after": when, "params": {}, "conf": {}, "mapped_args": {}})
    env = {"PAVE_API_URL": "http://127.0.0.1:9/execution/v1", "PAVE_TASK_TOKEN": "warm-up",
           "PAVE_DAG_FILE": "<pave warm-up>", "PAVE_DAG_ID": warm_id, "PAVE_TASK_ID": "noop",
           "PAVE_RUN_ID": f"manual__{when}", "PAVE_TRY_NUMBER": "1"}
    ok = 0
    saved = dict(os.environ)
    api: _WarmUpApi | None = None
    try:
        for _ in range(WARM_RUNS):
            if runtime.run({**env, runtime.CONTEXT_ENV: context}, [warm], disposable=True) != runtime.EXIT_SUCCESS:
                break
            ok += 1
        api = _WarmUpApi()
        value_env = {**env, "PAVE_API_URL": api.url, "PAVE_TASK_ID": "value"}
        value_context = context.replace('"task_id": "noop"', '"task_id": "value"')
        for deferred in (None, {}):  # pushed, then kept for the end (``runtime.deferred_xcoms``)
            runtime.deferred_xcoms = deferred
            for _ in range(WARM_RUNS):
                if runtime.run({**value_env, runtime.CONTEXT_ENV: value_context}, [warm],
                               disposable=True) != runtime.EXIT_SUCCESS:
                    break
                ok += 1
    except Exception:  # noqa: BLE001 -- an optimisation only
        pass
    finally:
        runtime.deferred_xcoms = None
        if api is not None:
            api.close()
        if dict(os.environ) != saved:
            os.environ.clear()
            os.environ.update(saved)
    return ok


def _learn_callables(dags: list[Any]) -> None:
    """Work out the parameters of every task's callable now (see
    ``operators.callable_params``), so that no forked task builds them."""
    from .operators import learn_callable_params

    for dag in dags:
        for task in list(getattr(dag, "task_dict", {}).values()):
            fn = getattr(task, "python_callable", None)
            if fn is None:
                fn = (getattr(task, "partial_kwargs", None) or {}).get("python_callable")
            if not callable(fn):
                continue
            try:
                learn_callable_params(fn)
            except (TypeError, ValueError):  # no signature: the task's own attempt says so
                continue


class _ThreadingAtFork:
    """``threading``'s after-fork handler, out of the interpreter's list of
    them while the zygote has one thread.

    CPython runs every ``os.register_at_fork(after_in_child=...)`` handler
    in each forked child. ``threading``'s rebuilds the module's state for
    the one thread that survives a fork (new locks, the thread table, every
    ``Thread`` object's locks): in a child of a process that had only that
    thread and held none of those locks, it leaves things as they were, but
    running it writes to (and so copies) about 100 pages the child shares
    with the zygote, some 0.5 ms of CPU per task. So the zygote takes it
    out of the list (found by the referrers of a handler of its own; the
    other handlers, e.g. ``random``'s reseeding and any the DAG file's
    imports registered, still run) and puts it back before a fork if the
    zygote ever has another thread."""

    def __init__(self) -> None:
        #: The interpreter's list of after-in-child handlers, once found.
        self.handlers: list[Any] | None = None
        self.handler: Any = None
        self.index = 0

    def take_out(self) -> bool:
        """Remove the handler; False (and nothing changed) when the list or
        the handler cannot be found, or the zygote has another thread."""
        handler = getattr(threading, "_after_fork", None)
        if handler is None or threading.active_count() != 1:
            return False

        def marker() -> None:
            return None

        os.register_at_fork(after_in_child=marker)
        lists = [r for r in gc.get_referrers(marker) if type(r) is list and any(h is marker for h in r)]
        for found in lists:
            found[:] = [h for h in found if h is not marker]
        if len(lists) != 1:
            return False
        handlers = lists[0]
        at = next((i for i, h in enumerate(handlers) if h is handler), None)
        if at is None:
            return False
        del handlers[at]
        self.handlers, self.handler, self.index = handlers, handler, at
        return True

    def before_fork(self) -> None:
        """Put the handler back where it was if the zygote has another thread by now."""
        if self.handlers is not None and threading.active_count() != 1:
            self.handlers.insert(self.index, self.handler)
            self.handlers = None


def settle_for_forks(dags: list[Any], threading_at_fork: _ThreadingAtFork | None) -> None:
    """What a zygote does last before it forks, so that its children copy
    as few of its pages as they can: work out the tasks' callables, warm
    the runtime, take ``threading``'s after-fork handler out (unless
    ``threading_at_fork`` is None), freeze what exists and back the
    memory with huge pages where it can (``collapse_heap``). Also used by
    ``bench/zygote_fork.py``, which measures a child of such a process."""
    _learn_callables(dags)
    _warm_runtime()
    # Objects that exist now are shared by every child: keep the collector
    # from touching (and so copying) their pages in the children. (The
    # handler's list is looked for first: the referrers of an object are
    # searched among the objects the collector has not frozen.)
    gc.collect()
    if threading_at_fork is not None:
        threading_at_fork.take_out()
    gc.freeze()
    collapse_heap()


def _libc() -> Any:
    """The C library through ``ctypes`` (for the calls ``os`` lacks:
    ``prctl``, ``madvise``, ``mincore``, ``syscall``); None without it."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


#: ``madvise`` advice (Linux 6.1): back a range with transparent huge pages now.
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: Of a range's small pages (512), how many must be in memory already for it
#: to be collapsed: a huge page fills the rest, which a sparse range would pay
#: in memory (the kernel's collapse on request has no such limit).
_MIN_RESIDENT = _HUGE_PAGE // _PAGE * 7 // 8
#: ``mincore``'s answer per page, translated to 1 (in memory) or 0.
_RESIDENT_BIT = bytes(i & 1 for i in range(256))


def collapse_heap(maps: str = "/proc/self/maps") -> int:
    """Backs the zygote's anonymous memory with 2 MiB pages where a whole
    aligned 2 MiB of it lies in one mapping (``madvise(MADV_COLLAPSE)``),
    and returns how many it collapsed.

    A fork copies one page-table entry per 4 KiB page its parent has in
    memory, and a child's exit takes them all down again: for a zygote of
    some 3000 such pages that was a large part of what each forked task
    cost. A huge page is one entry to copy and to take down; a child that
    writes into one gets it split into small ones (the page it writes is
    copied, as before). Measured in bench/RESULTS.md (session 12). Only
    ranges nearly all in memory already are asked for (``_MIN_RESIDENT``
    of 512 pages, from ``mincore``), so the zygote grows by at most an
    eighth of what it collapses.
    Best effort: a kernel without ``MADV_COLLAPSE`` (or with transparent
    huge pages turned off) refuses every range and nothing changes; a
    range it cannot collapse (a mapping marked not to, no free huge page
    now) stays as it was."""
    libc = _libc()
    try:
        madvise, mincore = libc.madvise, libc.mincore
        with open(maps) as fh:
            lines = fh.read().splitlines()
    except (OSError, AttributeError):  # no libc (None), or no such function
        return 0
    import ctypes  # present: `_libc` loaded the C library through it
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    mincore.restype = ctypes.c_int
    pages = ctypes.create_string_buffer(_HUGE_PAGE // _PAGE)
    collapsed = 0
    # Every range is asked for: the kernel refuses some mappings and not
    # others (one marked MADV_NOHUGEPAGE, as a library may mark its threads'
    # memory; importing numpy made 72 of 90 ranges such), and one refused
    # call costs a microsecond.
    for start in huge_page_ranges(lines):
        if mincore(start, _HUGE_PAGE, pages) != 0:
            continue
        if pages.raw.translate(_RESIDENT_BIT).count(1) >= _MIN_RESIDENT:
            collapsed += madvise(start, _HUGE_PAGE, _MADV_COLLAPSE) == 0
    return collapsed


def huge_page_ranges(maps_lines: list[str]) -> list[int]:
    """The starts of the aligned 2 MiB ranges that ``collapse_heap`` asks
    for, from the lines of ``/proc/self/maps`` ("start-end perms offset dev
    inode [name]"): private writable memory not backed by a file (the C
    heap, Python's arenas, other anonymous mappings; not the stack), each
    range wholly inside one mapping."""
    starts = []
    for line in maps_lines:
        fields = line.split()
        if len(fields) < 5 or fields[1] != "rw-p" or fields[4] != "0":
            continue
        if len(fields) > 5 and fields[5] != "[heap]":
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start = -(-low // _HUGE_PAGE) * _HUGE_PAGE
        while start + _HUGE_PAGE <= high:
            starts.append(start)
            start += _HUGE_PAGE
    return starts


#: ``sched_setattr`` by machine (``os.uname().machine``); elsewhere nothing is asked.
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "ppc64le": 355, "s390x": 345}
#: ``sched_attr.sched_flags``: children start with the default scheduling.
_SCHED_FLAG_RESET_ON_FORK = 0x01
#: The time slice the zygote asks for, in nanoseconds (the kernel's default
#: is 0.7 ms or more, times 1 + log2 of the CPUs).
ZYGOTE_SLICE_NS = 100_000


def ask_for_short_slices(slice_ns: int = ZYGOTE_SLICE_NS) -> bool:
    """Asks the kernel to run the zygote in short time slices (the
    ``sched_runtime`` of ``sched_setattr`` for an ordinary task, Linux
    6.12 and later): a task that wakes with a shorter slice than the
    running one gets the CPU sooner, without a larger share of it. Every
    step of every attempt goes through the zygote (accept, fork, report the
    pid, reap), which when the CPUs are full of its own children waited
    half a millisecond for a CPU each time it woke, while its attempts
    waited for it (bench/RESULTS.md, session 12). Children do not inherit
    it (``SCHED_FLAG_RESET_ON_FORK``, which for a zygote of policy
    ``SCHED_OTHER`` and a nice value of 0 or more changes nothing else for
    them). Left alone under any other policy or a negative nice value, and
    where the kernel refuses (older kernels ignore the slice). True when
    the kernel took it."""
    number = _SCHED_SETATTR.get(os.uname().machine)
    if number is None or not hasattr(os, "sched_getscheduler"):
        return False
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return False
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if nice < 0:
            return False  # reset on fork would give the children nice 0
        syscall = _libc().syscall
    except (OSError, AttributeError):  # AttributeError: no libc (None)
        return False
    import ctypes  # present: `_libc` loaded the C library through it
    # struct sched_attr (its first version, 48 bytes): size, policy, flags,
    # nice, priority, runtime, deadline, period.
    attr = ctypes.create_string_buffer(
        struct.pack("=IIQiIQQQ", 48, os.SCHED_OTHER, _SCHED_FLAG_RESET_ON_FORK, nice, 0, slice_ns, 0, 0))
    return syscall(ctypes.c_long(number), ctypes.c_long(0), attr, ctypes.c_uint(0)) == 0


class _Forked(BaseException):
    """Unwinds the zygote's loop in a new child (never seen by the zygote)."""

    def __init__(self, child: Child) -> None:
        super().__init__()
        self.child = child


class Zygote:
    """The zygote's state: what it imported, its socket, its children."""

    def __init__(self, socket_path: str, lock_path: str, idle: float, attempt_vars: list[str],
                 want_spec: bool = False, import_memory_kib: int = 0) -> None:
        self.socket_path = socket_path
        self.lock_path = lock_path
        self.idle = idle
        self.attempt_vars = {v for v in attempt_vars if v and not v.endswith("*")}
        self.prefixes = tuple(v[:-1] for v in attempt_vars if v.endswith("*") and len(v) > 1)
        self.base_env: dict[str, str] = {}
        #: ``env_digest(base_env)``, what a request's ``base_env_sha1`` must be.
        self.base_digest = ""
        self.cwd = os.getcwd()
        self.dags: list[Any] = []
        #: With ``want_spec``: the DAG file's spec document as ``pave.parse``
        #: prints it, once the import succeeded (``None`` if it failed).
        self.want_spec = want_spec
        self.import_memory_kib = import_memory_kib
        self.spec: str | None = None
        self.watched: list[tuple[str, Any]] = []
        self.replay: tuple[bytes, bytes] = (b"", b"")
        #: What importing the DAG file did to the environment (set, removed):
        #: a fresh interpreter's task would see it, so every child redoes it.
        self.env_changes: tuple[dict[str, str], list[str]] = ({}, [])
        #: What the interpreter's wrapper did to the environment (set, removed).
        self.wrapper_changes: tuple[dict[str, str], list[str]] = ({}, [])
        self.listener: socket.socket | None = None
        self.bound: Any = None
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.children: dict[int, _Conn] = {}
        self.wake_r = -1
        self.wake_w = -1
        self.pid = os.getpid()
        self.last_activity = time.monotonic()
        self.prctl: Any = None
        #: The next attempt's child, forked and set up ahead of it.
        self.spare: _Spare | None = None
        #: Attempts taken in this pass of the loop whose children are forked
        #: at its end, one after the other (see ``_fork_taken``).
        self.taken: list[tuple[_Conn, dict[str, Any]]] = []
        #: Supervised attempts' timeouts, a heap of ``(when (monotonic), seq,
        #: conn, "term" | "kill")``; an entry whose attempt ended is skipped.
        self.deadlines: list[tuple[float, int, _Conn, str]] = []
        self.deadline_seq = 0
        #: About how many entries of ``deadlines`` belong to ended attempts
        #: (a long timeout's entry would keep its connection for hours).
        self.stale_deadlines = 0
        #: ``/proc/self/stat`` field 22 of the zygote, for the claims it takes
        #: (read once; ``False``: not read yet).
        self.start_ticks: int | None | bool = False
        self.threading_at_fork = _ThreadingAtFork()
        #: Descriptors above stdio that children keep (set by ``listen``).
        self.kept_fds: set[int] = set()
        self.env_plan = _EnvPlan({}, [], {})

    # -- start-up ------------------------------------------------------------------
    def prepare(self, launch_env: dict[str, str] | None = None) -> None:
        """Import the DAG file and check that forking from here is safe; ``Unusable`` if not.

        ``launch_env`` is the environment the zygote was started with, as
        the supervisor sent it (the interpreter may have been started
        through a wrapper, such as a pyenv shim, that changed it): requests
        must match it, and what the wrapper changed is redone in every child."""
        dag_file = os.environ.get("PAVE_DAG_FILE")
        if not dag_file:
            raise Unusable("PAVE_DAG_FILE is not set")
        here = {k: v for k, v in os.environ.items() if not _is_attempt_var(k, self.attempt_vars, self.prefixes)}
        self.base_env = here if launch_env is None else launch_env
        self.wrapper_changes = ({k: v for k, v in here.items() if self.base_env.get(k) != v},
                                sorted(set(self.base_env) - set(here)))
        before = set(sys.modules)
        fingerprint = _fingerprint(dag_file)
        real = os.environ
        recorder = _RecordingEnviron(real, self.attempt_vars, self.prefixes)
        out_fd, err_fd = os.memfd_create("pave-import-stdout"), os.memfd_create("pave-import-stderr")
        saved = (os.dup(1), os.dup(2))
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.environ = recorder
        env_before = dict(real)
        limit = _limit_address_space(self.import_memory_kib)
        try:
            _, self.dags = load_dag_file(dag_file)
        except BaseException as e:  # a DAG file may raise anything, SystemExit included
            raise Unusable(f"importing {dag_file} failed ({type(e).__name__}: {e}); "
                           "the attempt runs in a fresh interpreter, whose log shows the traceback") from None
        finally:
            _restore_address_space(limit)
            os.environ = real
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            self.replay = (_read_all(out_fd), _read_all(err_fd))
        if self.want_spec:
            self.spec = _spec_text(self.dags, dag_file)
        env_after = dict(real)
        self.env_changes = ({k: v for k, v in env_after.items() if env_before.get(k) != v},
                            sorted(set(env_before) - set(env_after)))
        if recorder.pave_read:
            raise Unusable(f"{dag_file} reads {', '.join(sorted(recorder.pave_read))} at import time, "
                           "which differs per attempt")
        if threading.active_count() > 1:
            raise Unusable(f"importing {dag_file} started Python threads; forking would lose them")
        if _gpu_device_open():
            raise Unusable(f"importing {dag_file} opened a GPU device (CUDA was initialised); "
                           "a forked child could not use it")
        self.watched = [(dag_file, fingerprint)] + self._imported_files(before)
        try:
            self.prctl = _libc().prctl
            # Orphans of a task come to us, not to init: `_kill_leftovers`
            # finds them when the task ends, as the plain supervisor does.
            self.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        except (OSError, AttributeError):  # AttributeError: no libc (None)
            self.prctl = None
        self.env_plan = _EnvPlan(self.base_env, [self.wrapper_changes, self.env_changes], dict(os.environ))
        self.base_digest = env_digest(self.base_env)
        settle_for_forks(self.dags, self.threading_at_fork)
        ask_for_short_slices()

    def _imported_files(self, before: set[str]) -> list[tuple[str, Any]]:
        """The files of modules the DAG file imported from outside the
        standard library, site-packages and the SDK: edited, they make this
        zygote stale (a fresh interpreter would import the new code)."""
        skip = {os.path.dirname(os.path.abspath(__file__))}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            try:
                skip.add(os.path.abspath(sysconfig.get_paths()[key]))
            except KeyError:
                continue
        files = []
        for name in set(sys.modules) - before:
            path = getattr(sys.modules.get(name), "__file__", None)
            if not path:
                continue
            path = os.path.abspath(path)
            if any(path.startswith(root + os.sep) for root in skip):
                continue
            files.append((path, _fingerprint(path)))
        return sorted(files)

    def listen(self, not_kept: tuple[int, ...] = ()) -> None:
        """Bind the socket (the starting supervisor holds the lock, so a file
        already there is a dead zygote's) and set up the loop. The
        descriptors open now, but for the loop's own and ``not_kept``, are
        the ones children keep (``_close_zygote_fds``)."""
        self.kept_fds = _open_fds() - {self.selector.fileno(), *not_kept}
        name, dir_fd = _bindable(self.socket_path)
        try:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            old_umask = os.umask(0o177)
            try:
                listener.bind(name)
            finally:
                os.umask(old_umask)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        listener.listen(256)
        listener.setblocking(False)
        self.listener = listener
        self.bound = _fingerprint(self.socket_path)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, _on_sigchld)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.selector.register(listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")

    # -- the loop --------------------------------------------------------------------
    def serve(self) -> Child | None:
        """Serve until idle; in a forked child, return what it must run."""
        try:
            while True:
                if self.spare is None and self.listener is not None:
                    self._fork_spare()
                if not self.conns and not self.children:
                    if self.listener is None:
                        return None
                    if time.monotonic() - self.last_activity >= self.idle:
                        self._stop_accepting()
                        return None
                if self.listener is not None and _fingerprint(self.socket_path) != self.bound:
                    self._stop_accepting()  # removed or taken over by a newer zygote
                    continue
                now = time.monotonic()
                timeout = 1.0 if self.children else max(0.0, min(1.0, self.idle - (now - self.last_activity)))
                if self.deadlines:
                    timeout = min(timeout, max(0.0, self.deadlines[0][0] - now))
                for key, _ in self.selector.select(timeout):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._reap()
                    elif isinstance(key.data, tuple):  # ("setup" | "end", conn)
                        if key.data[0] == "setup":
                            self._setup_done(key.data[1])
                        else:
                            self._end_told(key.data[1])
                    else:
                        self._readable(key.data)
                if self.taken:
                    self._fork_taken()
                self._expire_setups()
                if self.deadlines:
                    self._expire_deadlines()
        except _Forked as f:
            return f.child

    def _accept(self) -> None:
        if self.listener is None:
            return
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.last_activity = time.monotonic()
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def _readable(self, conn: _Conn) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(conn.sock, 65536, PASSED_FDS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        conn.fds.extend(fds)
        if conn.pid is not None:
            if not data:
                if conn.supervise is None:  # the supervisor is gone: so must its task be
                    _kill_session(conn.pid, signal.SIGKILL)
                # A supervised attempt outlives its sender: the zygote is its
                # supervisor and still waits for it (it stays in `children`).
                self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        if len(conn.buf) < 4:
            return
        (size,) = struct.unpack(">I", conn.buf[:4])
        if size > MAX_REQUEST:
            self._refuse(conn, "the request is too large", retry=False)
            return
        if len(conn.buf) < 4 + size:
            return
        raw = bytes(conn.buf[:4 + size])
        conn.buf = bytearray()  # a running attempt's connection keeps no copy of its request
        try:
            request = json.loads(raw[4:])
        except ValueError as e:
            self._refuse(conn, f"the request is not JSON: {e}", retry=False)
            return
        self._launch(conn, request, raw)

    def _check(self, request: Any, conn: _Conn) -> tuple[str, bool] | None:
        """Why this zygote must not run ``request`` (and whether a new one could), or None.
        A supervised request's ``supervise`` object is parsed into ``conn.supervise``."""
        if not isinstance(request, dict) or not isinstance(request.get("env"), dict):
            return "the request has no environment", False
        want = PASSED_FDS
        if request.get("supervise") is not None:
            supervise = _Supervision.parse(request["supervise"])
            if isinstance(supervise, str):
                return f"the request's {supervise}", False
            conn.supervise = supervise
            want = SUPERVISED_FDS
        if len(conn.fds) != want:
            return f"the request must pass {want} file descriptors, not {len(conn.fds)}", False
        env = request["env"]
        digest = request.get("base_env_sha1")
        if digest is not None:
            # Its per-attempt variables, and the digest of the others.
            if digest != self.base_digest:
                return "the attempt's environment differs from this zygote's (base_env_sha1)", False
            names, prefixes = self.attempt_vars, self.prefixes
            for k in env:
                if not _is_attempt_var(k, names, prefixes):
                    return f"the request's environment holds {k}, which is no per-attempt variable", False
        else:
            base = {k: v for k, v in env.items() if not _is_attempt_var(k, self.attempt_vars, self.prefixes)}
            if base != self.base_env:
                differ = sorted(set(base.items()) ^ set(self.base_env.items()))
                return f"the attempt's environment differs from this zygote's ({differ[0][0]} and more)", False
        if request.get("cwd") not in (None, self.cwd):
            return "the attempt's working directory differs from this zygote's", False
        for path, fingerprint in self.watched:
            if _fingerprint(path) != fingerprint:
                return f"{path} changed since this zygote imported it", True
        return None

    def _launch(self, conn: _Conn, request: dict[str, Any], raw: bytes) -> None:
        problem = self._check(request, conn)
        if problem is not None:
            if problem[1]:  # first, so that the retry finds this zygote gone
                self._stop_accepting()
            self._refuse(conn, problem[0], retry=problem[1])
            return
        if conn.supervise is not None and not self._claim(conn, conn.supervise):
            return
        env = request["env"]
        conn.gpus = bool((conn.supervise is not None and conn.supervise.gpu_ids)
                         or env.get("CUDA_VISIBLE_DEVICES", self.base_env.get("CUDA_VISIBLE_DEVICES")))
        self.selector.unregister(conn.sock)
        if self._hand_to_spare(conn, raw):
            self.env_plan.keep(env)
            return
        self.taken.append((conn, request))

    def _fork_taken(self) -> None:
        """Fork the children of the attempts taken in this pass of the loop
        (``taken``), one right after the other, then do the zygote's part
        for each. After a fork the zygote shares every page with the child,
        so each page the zygote then writes is copied on its first write:
        a fork per attempt with the zygote's work for the next one in
        between cost some 270 copies per attempt (measured, 1000 mapped
        tasks), while a busy zygote takes about fourteen attempts per pass. The
        children are forked with the environment plan as it was before the
        pass (``_EnvPlan.keep`` runs after the forks), which each child's
        ``apply`` makes right. ``taken`` stays referenced by the zygote
        while it forks: a child unwinding out of here then frees none of
        the other attempts' requests, which would write to their pages."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.threading_at_fork.before_fork()
        for conn, request in self.taken:
            sync_r = sync_w = -1
            try:
                # Non-blocking: the zygote reads a child's word about its end
                # until there is no more (``_read_end``), and it never waits.
                sync_r, sync_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                if conn.supervise is not None:
                    self._started(conn.supervise)
                pid = os.fork()
            except OSError as e:
                for fd in (sync_r, sync_w):
                    if fd >= 0:
                        os.close(fd)
                self._cannot_run(conn, f"cannot fork the attempt's child: {e}")
                continue
            if pid == 0:
                os.close(sync_r)
                self._become_child(conn, sync_w)
                raise _Forked(Child(request, self.dags, self.replay, self.env_plan, end_fd=sync_w))
            # Not inherited by the next children: this child's set-up pipe
            # closes when it exits or sets up.
            os.close(sync_w)
            conn.pid = pid
            conn.setup_fd = sync_r
        taken, self.taken = self.taken, []
        setup_deadline = time.monotonic() + CHILD_SETUP_TIMEOUT
        for conn, request in taken:
            if conn.pid is None:
                continue  # not forked: refused
            conn.close_fds()
            self.children[conn.pid] = conn
            self.env_plan.keep(request["env"])
            # The child's set-up (its own session, PDEATHSIG) is waited for
            # in the loop, not here: meanwhile the zygote accepts and forks
            # for the other supervisors (on a busy machine a new child may
            # wait milliseconds for a CPU; waiting here serialised every
            # launch).
            conn.setup_deadline = setup_deadline
            self.selector.register(conn.setup_fd, selectors.EVENT_READ, ("setup", conn))

    def _fork_spare(self) -> None:
        """Fork the next attempt's child now, while nothing waits for it: it
        sets itself up (its own session, PDEATHSIG, the zygote's descriptors
        closed) and waits on a socket pair for its attempt, so that a request
        costs a hand-over instead of a fork and a set-up (about 1.5 ms of a
        7 ms chain hop). A spare that cannot be forked is simply not there:
        the next attempt is forked as it comes."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        self.threading_at_fork.before_fork()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            request, end_fd = self._become_spare(theirs)
            raise _Forked(Child(request, self.dags, self.replay, self.env_plan, end_fd=end_fd))
        theirs.close()
        self.spare = _Spare(pid, ours)

    def _become_spare(self, sock: socket.socket) -> tuple[dict[str, Any], int]:
        """In a new spare: leave the zygote's session, signal set-up and
        descriptors behind, then wait for the attempt (its request and
        stdio); exit when the zygote lets the spare go (end of file). The
        request, and the socket's descriptor, on which the child tells its end."""
        try:
            self._own_session()
            self._close_zygote_fds(keep=sock.fileno())
            buf = bytearray()
            fds: list[int] = []
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                data, got, _, _ = socket.recv_fds(sock, 65536, PASSED_FDS)
                fds.extend(got)
                if not data:
                    os._exit(0)  # let go without an attempt
                buf += data
            end_fd = sock.detach()
            request = json.loads(bytes(buf[4:]))
            # A supervised request passes one fd, the log: stdout and stderr.
            if len(fds) != (SUPERVISED_FDS if request.get("supervise") is not None else PASSED_FDS):
                os._exit(1)
            _take_stdio(fds[0], fds[-1])
            return request, end_fd
        except BaseException:
            os._exit(1)

    def _hand_to_spare(self, conn: _Conn, raw: bytes) -> bool:
        """Give the attempt of ``conn`` to the spare and report its pid; False
        (and no spare any more) if there is none or it cannot take it."""
        spare, self.spare = self.spare, None
        if spare is None:
            return False
        try:
            spare.sock.settimeout(5.0)
            sent = socket.send_fds(spare.sock, [raw], conn.fds)
            if sent < len(raw):
                spare.sock.sendall(raw[sent:])
        except OSError:
            spare.sock.close()
            _kill_spare(spare.pid)
            return False
        if conn.supervise is not None:
            self._started(conn.supervise)
        conn.close_fds()
        conn.pid = spare.pid
        self.children[spare.pid] = conn
        self._watch_end(conn, spare.sock.detach())
        self._report_pid(conn, spare.pid)
        return True

    def _drop_spare(self) -> None:
        """Let the spare go (it exits on end of file; SIGKILL to be sure)."""
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.sock.close()
            _kill_spare(spare.pid)

    def _setup_done(self, conn: _Conn) -> bool:
        """The child of ``conn`` said it is set up, or its pipe closed: report
        its pid to the supervisor and watch the connection; or, if it never
        set up, kill it and refuse. True when the pid was reported."""
        if conn.setup_fd < 0:
            return conn.pid is not None  # already done (a stale event)
        try:
            ready = os.read(conn.setup_fd, 1) == b"k"
        except OSError:
            ready = False
        if ready and conn.pid is not None:
            # The pipe stays open: on it the child tells its end (the same
            # registration, another key: no system call).
            conn.end_fd, conn.setup_fd = conn.setup_fd, -1
            self.selector.modify(conn.end_fd, selectors.EVENT_READ, ("end", conn))
        else:
            self._end_setup(conn)
        pid = conn.pid
        if pid is None:
            return False
        if not ready:
            _kill_session(pid, signal.SIGKILL)
            self.children.pop(pid, None)
            conn.pid = None
            self._cannot_run(conn, "the forked child did not set itself up")
            return False
        self._report_pid(conn, pid)
        return True

    def _report_pid(self, conn: _Conn, pid: int) -> None:
        """Tell the supervisor its task's pid, then watch the connection
        (its end kills the task). A supervised attempt's timeout starts to
        count down; its sender's end is no lease."""
        # Its own start time with the pid: the supervisor's side records it
        # (to tell this zygote from a later process with its pid) without
        # reading /proc for every attempt.
        told = _tell_conn(conn, {"pid": pid, "start_ticks": self._own_start_ticks()})
        sup = conn.supervise
        if sup is not None:
            if sup.timeout_ms is not None:
                self._schedule(conn, sup.started_mono + sup.timeout_ms / 1000, "term")
            if not told:
                self._drop(conn)  # the task runs on; the zygote writes its result
                return
        elif not told:
            # The supervisor is gone: so must its task be (it may have
            # started, as if the supervisor had died a moment later).
            _kill_session(pid, signal.SIGKILL)
        if conn.sock.fileno() >= 0:
            if conn.sock.gettimeout() != 0.0:
                conn.sock.setblocking(False)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _end_setup(self, conn: _Conn) -> None:
        conn.setup_fd = self._unwatch(conn.setup_fd)

    def _unwatch(self, fd: int) -> int:
        """Stop watching ``fd`` and close it (nothing when it is -1); returns -1,
        for the field that held it."""
        if fd >= 0:
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        return -1

    def _expire_setups(self) -> None:
        """Kill and refuse the children that did not set up in time."""
        now = time.monotonic()
        for conn in list(self.children.values()):
            if conn.setup_fd >= 0 and now >= conn.setup_deadline:
                pid = conn.pid
                self._end_setup(conn)
                if pid is not None:
                    _kill_session(pid, signal.SIGKILL)
                    self.children.pop(pid, None)
                conn.pid = None
                self._cannot_run(conn, "the forked child did not set itself up")

    def _become_child(self, conn: _Conn, sync_w: int) -> None:
        """In the new child: leave the zygote's session (and tell it: the pid
        it reports is a process group and session of its own from then on),
        its signal set-up and file descriptors behind, and take the
        attempt's stdio. The task does not wait for the supervisor to learn
        the pid: were it gone, the zygote kills the task at once."""
        try:
            self._own_session()
            os.write(sync_w, b"k")
            _take_stdio(conn.fds[0], conn.fds[-1])  # one fd (supervised): stdout and stderr
            conn.fds = []
            self._close_zygote_fds(keep=sync_w)  # the pipe stays: the child tells its end on it
        except BaseException:
            os._exit(1)

    def _own_session(self) -> None:
        """In a new child: the signal set-up of a fresh interpreter, a session
        (and process group) of its own, and death with the zygote."""
        signal.set_wakeup_fd(-1)
        # Plain numbers and the C function: ``signal.signal`` turns the old
        # handler into an enum member (an exception raised and caught, for
        # a Python function), which cost a forked task some 40 pages.
        _c_signal(_SIGCHLD, _SIG_DFL)
        os.setsid()
        if self.prctl is not None:
            self.prctl(_PR_SET_PDEATHSIG, _SIGKILL)
        if os.getppid() != self.pid:
            os._exit(1)  # the zygote died before PDEATHSIG was armed

    def _close_zygote_fds(self, keep: int = -1) -> None:
        """In a new child: close what belongs to the zygote (the other
        supervisors' connections and descriptors, set-up pipes, the spare's
        socket, the listener, the loop): every descriptor but stdio, those
        the process had when the zygote started listening (the DAG file's
        import may have opened some) and ``keep``. By number, with
        ``close_range``: closing the Python objects (and clearing the
        selector's table) wrote to, and so copied, a page or two for each
        of the other connections, some 50 pages on a busy zygote. The
        objects stay behind, never used: the child runs its attempt and
        exits with ``os._exit``."""
        lo = 3
        for fd in sorted({*self.kept_fds, keep}):
            if fd >= lo:
                os.closerange(lo, fd)
                lo = fd + 1
        os.closerange(lo, _MAX_FD)

    def _reap(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:
                self.spare.sock.close()  # it died waiting; the loop forks another
                self.spare = None
                continue
            conn = self.children.get(pid)
            if conn is None:
                continue  # an orphan of some task, re-parented to us
            self.last_activity = time.monotonic()
            if conn.setup_fd >= 0 and not self._setup_done(conn):
                self._kill_leftovers(pid)
                continue  # it died before it set up: refused, no exit report
            self.children.pop(pid, None)
            self._kill_leftovers(pid)
            if conn.end_fd >= 0 and conn.supervise is not None:
                self._read_end(conn)  # all it said is in the channel now: its XComs
            xcoms = None
            if os.WIFSIGNALED(status):
                exit_ = {"type": "signal", "signal": os.WTERMSIG(status)}
            else:
                exit_ = {"type": "code", "code": os.waitstatus_to_exitcode(status)}
                if exit_["code"] == 0 and conn.told is not None:
                    xcoms = conn.told[2]  # only a word of a success brings XComs (``_parse_told``)
            self._report_end(conn, pid, exit_, int(usage.ru_maxrss), xcoms)

    def _watch_end(self, conn: _Conn, fd: int) -> None:
        """Read the end of the child of ``conn`` from ``fd`` (see ``_end_told``)."""
        conn.end_fd = fd
        try:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, ("end", conn))
        except (OSError, ValueError, KeyError):
            conn.end_fd = self._unwatch(fd)  # its end is then its reap

    def _end_told(self, conn: _Conn) -> None:
        """The child of ``conn`` said how it ends (``Child.tell_end``), or its
        channel closed. Said by the attempt's own process, of an attempt
        without GPUs: its end is reported now, as the reap would (what is
        left of its process group and session killed first); the reap of
        the process, later, finds it no longer a child of an attempt. Else
        (nothing said: it died some other way; said by a process it forked;
        GPUs, which are free once the process is gone) the reap reports."""
        if conn.end_fd < 0 or not self._read_end(conn):
            return  # a stale event (already reaped), or more of the word to come
        pid = conn.pid
        if pid is None or self.children.get(pid) is not conn or conn.gpus or conn.told is None:
            return
        self.last_activity = time.monotonic()
        self.children.pop(pid, None)
        self._kill_leftovers(pid)
        code, peak, xcoms = conn.told
        self._report_end(conn, pid, {"type": "code", "code": code}, peak, xcoms)

    def _read_end(self, conn: _Conn) -> bool:
        """Read what the child of ``conn`` has said on its end channel; once it
        said all (or the channel closed, or holds no more and the child is
        gone), stop watching it and keep the word in ``conn.told`` if it is
        one from the child itself. True then; False while more is to come."""
        while True:
            try:
                data = os.read(conn.end_fd, 65536)
            except (BlockingIOError, InterruptedError):
                if conn.pid is not None and self.children.get(conn.pid) is conn:
                    return False
                break  # reaped: no more will come
            except OSError:
                break
            if not data:
                break
            conn.end_buf += data
            if _told_complete(conn.end_buf):
                break
        told = _parse_told(conn.end_buf)
        conn.end_buf = b""
        self._close_end(conn)
        if told is not None and told[0] == conn.pid:
            conn.told = told[1:]
        return True

    def _report_end(self, conn: _Conn, pid: int, exit_: dict[str, Any], maxrss_kib: int,
                    xcoms: dict[str, Any] | None = None) -> None:
        """Report the end of the attempt of ``conn``, whose task ``pid`` ended
        (a supervised one's result file first, with the ``xcoms`` that go
        with its end), and drop the connection."""
        line: dict[str, Any] = {"exit": exit_, "maxrss_kib": maxrss_kib}
        if conn.supervise is not None:
            # The result is in place before the line: its reader reads it then.
            self._write_result(conn.supervise, pid, exit_, maxrss_kib, line, xcoms)
            if conn.sock.fileno() >= 0:
                _tell_conn(conn, line)
            if conn.supervise.timeout_ms is not None:
                self._forget_deadline()
        else:
            _tell_conn(conn, line)
        self._drop(conn)

    def _close_end(self, conn: _Conn) -> None:
        conn.end_fd = self._unwatch(conn.end_fd)

    def _kill_leftovers(self, task: int) -> None:
        """After a task's main process ended: SIGKILL what is left of its
        process group, and its orphans (re-parented to us, still in its
        session). A task must not outlive its attempt and its GPU slot."""
        try:
            os.killpg(task, signal.SIGKILL)
        except OSError:
            pass
        try:
            # Unbuffered: `open` would also stat, ask isatty and seek.
            fd = os.open(f"/proc/self/task/{self.pid}/children", os.O_RDONLY | os.O_CLOEXEC)
            pids = [int(p) for p in _read_all(fd).split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            if pid in self.children:
                continue
            try:
                if os.getsid(pid) == task:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def _refuse(self, conn: _Conn, why: str, *, retry: bool) -> None:
        _tell_conn(conn, {"refused": why, "retry": retry})
        self._drop(conn)

    def _cannot_run(self, conn: _Conn, why: str) -> None:
        """Nothing of the attempt ran, and nothing will: a supervisor's request
        is refused (it runs a fresh interpreter); a supervised one, whose
        claim this zygote took, gets a result file that says so (``not_run``),
        so that nobody waits for the attempt, and a refusal marked
        ``not_run``."""
        sup = conn.supervise
        if sup is None:
            self._refuse(conn, why, retry=False)
            return
        now = _rfc3339(time.time())
        answer: dict[str, Any] = {"refused": why, "retry": False, "not_run": True}
        result = {"exit": {"type": "not_run"}, "pid": None, "timed_out": False, "cancelled": False,
                  "started_at": now, "ended_at": now, "duration_ms": 0, "peak_rss_kib": 0,
                  "last_line": None, "error": why, "notes": []}
        self._create_result(sup, result, answer)
        _tell_conn(conn, answer)
        self._drop(conn)

    # -- supervised attempts -------------------------------------------------------
    def _claim(self, conn: _Conn, sup: _Supervision) -> bool:
        """Take the attempt's claim for this zygote; if that fails, answer
        (``claimed``: someone else holds it; else a refusal) and drop the
        connection. True when the claim is ours."""
        claim = {"claimed_by": "supervisor", "pid": self.pid, "start_ticks": self._own_start_ticks(),
                 "started_at": _rfc3339(time.time()), "gpu_ids": sup.gpu_ids, "zygote": True}
        try:
            _create_exclusive(sup.claim, json.dumps(claim).encode())
            return True
        except FileExistsError:
            _tell_conn(conn, {"claimed": True})
        except OSError as e:
            _tell_conn(conn, {"refused": f"cannot take the claim {sup.claim}: {e}", "retry": False})
        self._drop(conn)
        return False

    def _own_start_ticks(self) -> int | None:
        """This zygote's start time in clock ticks (read once), for its claims
        and pid answers."""
        if self.start_ticks is False:
            self.start_ticks = _start_ticks()
        return self.start_ticks  # type: ignore[return-value]

    @staticmethod
    def _started(sup: _Supervision) -> None:
        """The attempt was handed over or forked now: its timeout counts from here."""
        sup.started_at = time.time()
        sup.started_mono = time.monotonic()

    def _schedule(self, conn: _Conn, when: float, what: str) -> None:
        self.deadline_seq += 1
        heapq.heappush(self.deadlines, (when, self.deadline_seq, conn, what))

    def _forget_deadline(self) -> None:
        """A supervised attempt with a timeout ended: its entry in ``deadlines``
        is stale; once most are, they are dropped."""
        self.stale_deadlines += 1
        if self.stale_deadlines > 64 and 2 * self.stale_deadlines > len(self.deadlines):
            live = self.children
            self.deadlines = [d for d in self.deadlines if d[2].pid is not None and live.get(d[2].pid) is d[2]]
            heapq.heapify(self.deadlines)
            self.stale_deadlines = 0

    def _expire_deadlines(self) -> None:
        """The supervised attempts' timeouts that are due: SIGTERM, then
        (``grace_ms`` later, if the task is still there) SIGKILL, to the task's
        process group and session, as ``pave-supervise`` does."""
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, conn, what = heapq.heappop(self.deadlines)
            pid, sup = conn.pid, conn.supervise
            if pid is None or sup is None or self.children.get(pid) is not conn:
                continue  # it ended meanwhile
            if what == "term":
                secs = _secs(sup.timeout_ms or 0)
                _log_to_task(pid, f"[pave] execution_timeout of {secs}s exceeded: "
                                  f"sending SIGTERM to process group {pid}\n")
                _kill_session(pid, signal.SIGTERM)
                sup.timed_out = True
                sup.notes.append(f"execution_timeout of {secs}s exceeded: sent SIGTERM to process group {pid}")
                self._schedule(conn, now + sup.grace_ms / 1000, "kill")
                continue
            self._reap()  # a task that has just exited is not "still running"
            if self.children.get(pid) is not conn:
                continue
            _log_to_task(pid, f"[pave] process group {pid} still running after SIGTERM: sending SIGKILL\n")
            _kill_session(pid, signal.SIGKILL)
            sup.notes.append(f"process group {pid} still running {_secs(sup.grace_ms)}s after SIGTERM: "
                             "sent SIGKILL")

    def _write_result(self, sup: _Supervision, pid: int, exit_: dict[str, Any], maxrss_kib: int,
                      line: dict[str, Any], xcoms: dict[str, Any] | None = None) -> None:
        """The result file of a supervised attempt whose task ``pid`` ended,
        with the XComs that go with its end; why it could not be written
        goes to ``line`` (``result_error``)."""
        ended = time.time()
        duration_ms = max(0, int((time.monotonic() - sup.started_mono) * 1000))
        result = {"exit": exit_, "pid": pid, "timed_out": sup.timed_out, "cancelled": False,
                  "started_at": _rfc3339(sup.started_at), "ended_at": _rfc3339(ended),
                  "duration_ms": duration_ms, "peak_rss_kib": maxrss_kib, "last_line": None,
                  "error": None, "notes": sup.notes}
        if xcoms:
            result["xcoms"] = xcoms
        self._create_result(sup, result, line)

    @staticmethod
    def _create_result(sup: _Supervision, result: dict[str, Any], answer: dict[str, Any]) -> None:
        """Link ``result`` into place at ``sup.result`` (complete or absent; a
        file already there is left alone); a failure is noted in ``answer``
        and in the zygote's log."""
        try:
            _create_exclusive(sup.result, json.dumps(result).encode())
        except FileExistsError:
            pass
        except OSError as e:
            why = f"cannot write the result {sup.result}: {e}"
            answer["result_error"] = why
            print(f"pave.zygote: {why}", file=sys.stderr, flush=True)

    def _drop(self, conn: _Conn) -> None:
        conn.close_fds()
        self._close_end(conn)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        fd = conn.sock.fileno()
        if fd >= 0:
            self.conns.pop(fd, None)
        conn.sock.close()
        self.last_activity = time.monotonic()

    def _stop_accepting(self) -> None:
        """Close the listening socket, and remove its file if it is still
        ours (under the start lock, so a new zygote's is never removed)."""
        self._drop_spare()
        if self.listener is None:
            return
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _fingerprint(self.socket_path) == self.bound:
                    os.unlink(self.socket_path)
            finally:
                os.close(fd)
        except OSError:
            pass
        self.listener.close()
        self.listener = None


def _limit_address_space(kib: int) -> tuple[int, int] | None:
    """Cap the address space (soft ``RLIMIT_AS``) for the DAG file's import,
    as the DAG processor's ``ulimit -v`` caps ``pave.parse``; the previous
    limits, to restore after the import (the tasks forked later must not
    inherit the parser's cap), or ``None`` when nothing was changed."""
    if kib <= 0:
        return None
    try:
        import resource

        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = kib * 1024
        if old[1] != resource.RLIM_INFINITY:
            cap = min(cap, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
        return old
    except (ImportError, OSError, ValueError):
        return None


def _restore_address_space(old: tuple[int, int] | None) -> None:
    if old is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, old)
    except (OSError, ValueError):
        pass


def _on_sigchld(signum: int, frame: Any) -> None:
    """SIGCHLD only wakes the loop (through the wake-up fd); ``_reap`` does the work."""


def _read_all(fd: int) -> bytes:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _tell(fd: int, message: dict[str, Any]) -> None:
    """One JSON line to the starting supervisor; it may be gone (then nobody listens)."""
    try:
        os.write(fd, json.dumps(message).encode() + b"\n")
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise


def _read_launch_env() -> dict[str, str] | None:
    """The environment the supervisor started us with, as JSON on stdin
    (``None`` when stdin has none: then this process's own counts)."""
    try:
        data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        env = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
    if isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return env
    return None


def _spec_text(dags: list[Any], dag_file: str) -> str | None:
    """What ``python -m pave.parse`` prints for these DAGs (``None`` if the
    spec fails: the caller's ``pave.parse`` then reports why)."""
    from .spec import to_spec_document

    try:
        return json.dumps(to_spec_document(dags, fileloc=os.path.abspath(dag_file)),
                          ensure_ascii=False, allow_nan=False)
    except Exception:  # noqa: BLE001 -- reported by pave.parse, not here
        return None


def _parse_args(argv: list[str]) -> dict[str, str]:
    opts = {"--socket": "", "--lock": "", "--idle": "60", "--attempt-vars": "", "--spec": "",
            "--import-memory-kib": "0"}
    it = iter(argv)
    for arg in it:
        if arg == "--spec":
            opts[arg] = "1"
            continue
        if arg not in opts:
            raise SystemExit(f"pave.zygote: unknown argument {arg!r}")
        opts[arg] = next(it, "")
    if not opts["--socket"] or not opts["--lock"]:
        raise SystemExit("pave.zygote: --socket and --lock are required")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Start a zygote (see the module's docstring); in a forked child, run its attempt."""
    opts = _parse_args(sys.argv[1:] if argv is None else argv)
    launch_env = _read_launch_env()
    if os.fork() != 0:
        os._exit(0)  # the supervisor reaps this process; the zygote is reparented
    os.setsid()
    proto = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    _tell(proto, {"pid": os.getpid()})
    try:
        idle = float(opts["--idle"])
    except ValueError:
        idle = 60.0
    try:
        import_memory_kib = int(opts["--import-memory-kib"])
    except ValueError:
        import_memory_kib = 0
    zygote = Zygote(opts["--socket"], opts["--lock"], idle, opts["--attempt-vars"].split(","),
                    want_spec=bool(opts["--spec"]), import_memory_kib=import_memory_kib)
    try:
        try:
            zygote.prepare(launch_env)
        finally:
            if zygote.spec is not None:
                _tell(proto, {"spec": zygote.spec})
                zygote.spec = None
        zygote.listen(not_kept=(proto,))
    except Unusable as e:
        _tell(proto, {"unusable": str(e)})
        os._exit(0)
    except Exception as e:  # noqa: BLE001 -- any failure here only means "not pre-forked"
        _tell(proto, {"unusable": f"the zygote could not start: {type(e).__name__}: {e}"})
        os._exit(0)
    _tell(proto, {"ready": True})
    os.close(proto)
    child = zygote.serve()
    if child is None:
        sys.stderr.flush()
        os._exit(0)  # no atexit handlers: the DAG file's run in each child, not here
    try:
        code = child.run()
    except SystemExit as e:  # the task called sys.exit(): as the interpreter maps it
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    child.exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
