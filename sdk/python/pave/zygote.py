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
depends on the zygote. docs/python-runtime.md describes the design.

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
  file descriptors (``SCM_RIGHTS``): the task's stdout and stderr.
- answers, JSON lines: ``{"pid": N}`` once the child is in its own session
  (its pid is also its process group and session id), then
  ``{"exit": {"type": "code", "code": C} | {"type": "signal", "signal": S},
  "maxrss_kib": K}`` when it has been reaped (``wait4``). Or, instead of
  ``pid``, ``{"refused": "why", "retry": bool}``: nothing was forked
  (``retry``: the DAG file or a module it imported changed, so this zygote
  stops accepting and a new one should be started).
- if the supervisor's end of the connection closes while the child runs,
  the supervisor died: the zygote SIGKILLs the child's process group and
  session, as the scheduler would.

The zygote is single-threaded (never fork from a process with threads): one
``selectors`` loop over the listening socket, the connections, the pipes
on which new children say they are set up (the pid is reported then; the
loop never blocks on one child, so launches overlap on a busy machine) and
the SIGCHLD wake-up fd. It exits after ``--idle`` seconds without attempts, when
its socket path is removed or taken over, or once a change of its files
made it stop accepting and its last child ended. Children die with it
(``PR_SET_PDEATHSIG``), so an attempt never outlives both its supervisor
and its zygote.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys
import sysconfig
import threading
import time
from typing import Any

# `macros` is imported by the runtime lazily: importing it here once saves
# every child the time. (The runtime's API client speaks HTTP over a plain
# socket, so no `http.client` is needed.)
from . import macros, runtime  # noqa: F401
from .loader import load_dag_file

#: How long the zygote waits for a new child to set itself up.
CHILD_SETUP_TIMEOUT = 10.0
#: Most bytes of one request (the environment is in it).
MAX_REQUEST = 4 * 1024 * 1024
#: File descriptors passed with a request: stdout, stderr.
PASSED_FDS = 2

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class Unusable(Exception):
    """This DAG file cannot be served by a zygote; the message says why."""


def _fingerprint(path: str) -> tuple[int, int, int, int] | None:
    """What changes when a file is edited or replaced; ``None`` when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


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
    """One JSON line to a supervisor (blocking, at most 5 s); False if it is gone."""
    try:
        conn.sock.setblocking(True)
        conn.sock.settimeout(5.0)
        conn.sock.sendall(json.dumps(message).encode() + b"\n")
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

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def close_setup_fd(self) -> None:
        if self.setup_fd >= 0:
            try:
                os.close(self.setup_fd)
            except OSError:
                pass
            self.setup_fd = -1


class Child:
    """What a forked child runs once it is on its own: the attempt."""

    def __init__(self, request: dict[str, Any], dags: list[Any], replay: tuple[bytes, bytes],
                 env_changes: list[tuple[dict[str, str], list[str]]]) -> None:
        self.request = request
        self.dags = dags
        self.replay = replay
        self.env_changes = env_changes

    def run(self) -> int:
        """Take the attempt's working directory and environment, replay what
        importing the DAG file printed (a plain ``python -m pave.runtime``
        prints it in every attempt's log), and run the attempt."""
        req = self.request
        env = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
        for changed, removed in self.env_changes:
            env.update(changed)
            for name in removed:
                env.pop(name, None)
        # Only what differs from the zygote's environment (the attempt's
        # equals it but for the attempt's own variables): clearing and
        # refilling it cost the child a third of a millisecond.
        current = os.environ
        for name in [k for k in current if k not in env]:
            del current[name]
        for name, value in env.items():
            if current.get(name) != value:
                current[name] = value
        cwd = req.get("cwd")
        if cwd:
            os.chdir(cwd)
        sys.argv = [runtime.__file__ or "pave.runtime"]
        out, err = self.replay
        if out:
            os.write(1, out)
        if err:
            os.write(2, err)
        return runtime.run(dags=self.dags)

    def exit(self, code: int) -> None:
        """End the child as the interpreter would at exit, as far as a task
        can tell: wait for its non-daemon threads, run the atexit handlers,
        flush stdio; but skip the teardown of every module, which in a
        forked child would touch (and so copy) most shared pages."""
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
        os._exit(code)


class _Spare:
    """A child forked ahead of its attempt, set up and waiting for it on a
    socket pair (see ``Zygote._fork_spare``)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock


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
            import ctypes

            self.prctl = ctypes.CDLL(None, use_errno=True).prctl
            # Orphans of a task come to us, not to init: `_kill_leftovers`
            # finds them when the task ends, as the plain supervisor does.
            self.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        except (ImportError, OSError, AttributeError):
            self.prctl = None
        # Objects that exist now are shared by every child: keep the collector
        # from touching (and so copying) their pages in the children.
        gc.collect()
        gc.freeze()

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

    def listen(self) -> None:
        """Bind the socket (the starting supervisor holds the lock, so a file
        already there is a dead zygote's) and set up the loop."""
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
                timeout = max(0.0, min(1.0, self.idle - (time.monotonic() - self.last_activity)))
                for key, _ in self.selector.select(timeout if not self.children else 1.0):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._reap()
                    elif isinstance(key.data, tuple):  # ("setup", conn)
                        self._setup_done(key.data[1])
                    else:
                        self._readable(key.data)
                self._expire_setups()
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
            if not data:  # the supervisor is gone: so must its task be
                _kill_session(conn.pid, signal.SIGKILL)
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
        try:
            request = json.loads(raw[4:])
        except ValueError as e:
            self._refuse(conn, f"the request is not JSON: {e}", retry=False)
            return
        self._launch(conn, request, raw)

    def _check(self, request: Any, conn: _Conn) -> tuple[str, bool] | None:
        """Why this zygote must not run ``request`` (and whether a new one could), or None."""
        if not isinstance(request, dict) or not isinstance(request.get("env"), dict):
            return "the request has no environment", False
        if len(conn.fds) != PASSED_FDS:
            return f"the request must pass {PASSED_FDS} file descriptors, not {len(conn.fds)}", False
        env = request["env"]
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
        self.selector.unregister(conn.sock)
        if self._hand_to_spare(conn, raw):
            return
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(sync_r)
            self._become_child(conn, sync_w)
            raise _Forked(Child(request, self.dags, self.replay, [self.wrapper_changes, self.env_changes]))
        os.close(sync_w)
        conn.close_fds()
        conn.pid = pid
        self.children[pid] = conn
        # The child's set-up (its own session, PDEATHSIG) is waited for in
        # the loop, not here: meanwhile the zygote accepts and forks for the
        # other supervisors (on a busy machine a new child may wait
        # milliseconds for a CPU; waiting here serialised every launch).
        conn.setup_fd = sync_r
        conn.setup_deadline = time.monotonic() + CHILD_SETUP_TIMEOUT
        self.selector.register(sync_r, selectors.EVENT_READ, ("setup", conn))

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
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            request = self._become_spare(theirs)
            raise _Forked(Child(request, self.dags, self.replay, [self.wrapper_changes, self.env_changes]))
        theirs.close()
        self.spare = _Spare(pid, ours)

    def _become_spare(self, sock: socket.socket) -> dict[str, Any]:
        """In a new spare: leave the zygote's session, signal set-up and
        descriptors behind, then wait for the attempt (its request and
        stdio); exit when the zygote lets the spare go (end of file)."""
        try:
            self._own_session()
            self._close_zygote_fds()
            buf = bytearray()
            fds: list[int] = []
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                data, got, _, _ = socket.recv_fds(sock, 65536, PASSED_FDS)
                fds.extend(got)
                if not data:
                    os._exit(0)  # let go without an attempt
                buf += data
            sock.close()
            request = json.loads(bytes(buf[4:]))
            if len(fds) != PASSED_FDS:
                os._exit(1)
            _take_stdio(fds[0], fds[1])
            return request
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
        spare.sock.close()
        conn.close_fds()
        conn.pid = spare.pid
        self.children[spare.pid] = conn
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
        self._end_setup(conn)
        pid = conn.pid
        if pid is None:
            return False
        if not ready:
            _kill_session(pid, signal.SIGKILL)
            self.children.pop(pid, None)
            conn.pid = None
            self._refuse(conn, "the forked child did not set itself up", retry=False)
            return False
        self._report_pid(conn, pid)
        return True

    def _report_pid(self, conn: _Conn, pid: int) -> None:
        """Tell the supervisor its task's pid, then watch the connection
        (its end kills the task)."""
        if not _tell_conn(conn, {"pid": pid}):
            # The supervisor is gone: so must its task be (it may have
            # started, as if the supervisor had died a moment later).
            _kill_session(pid, signal.SIGKILL)
        if conn.sock.fileno() >= 0:
            conn.sock.setblocking(False)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _end_setup(self, conn: _Conn) -> None:
        if conn.setup_fd < 0:
            return
        try:
            self.selector.unregister(conn.setup_fd)
        except (KeyError, ValueError):
            pass
        conn.close_setup_fd()

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
                self._refuse(conn, "the forked child did not set itself up", retry=False)

    def _become_child(self, conn: _Conn, sync_w: int) -> None:
        """In the new child: leave the zygote's session (and tell it: the pid
        it reports is a process group and session of its own from then on),
        its signal set-up and file descriptors behind, and take the
        attempt's stdio. The task does not wait for the supervisor to learn
        the pid: were it gone, the zygote kills the task at once."""
        try:
            self._own_session()
            os.write(sync_w, b"k")
            os.close(sync_w)
            _take_stdio(conn.fds[0], conn.fds[1])
            conn.fds = []
            self._close_zygote_fds()
        except BaseException:
            os._exit(1)

    def _own_session(self) -> None:
        """In a new child: the signal set-up of a fresh interpreter, a session
        (and process group) of its own, and death with the zygote."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if self.prctl is not None:
            self.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.pid:
            os._exit(1)  # the zygote died before PDEATHSIG was armed

    def _close_zygote_fds(self) -> None:
        """In a new child: close what belongs to the zygote (the other
        supervisors' connections and descriptors, set-up pipes, the spare's
        socket, the listener, the loop)."""
        for other in list(self.conns.values()):
            other.close_fds()
            other.close_setup_fd()
            other.sock.close()
        if self.spare is not None:
            self.spare.sock.close()
        if self.listener is not None:
            self.listener.close()
        self.selector.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)

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
            if os.WIFSIGNALED(status):
                exit_ = {"type": "signal", "signal": os.WTERMSIG(status)}
            else:
                exit_ = {"type": "code", "code": os.waitstatus_to_exitcode(status)}
            _tell_conn(conn, {"exit": exit_, "maxrss_kib": int(usage.ru_maxrss)})
            self._drop(conn)

    def _kill_leftovers(self, task: int) -> None:
        """After a task's main process ended: SIGKILL what is left of its
        process group, and its orphans (re-parented to us, still in its
        session). A task must not outlive its attempt and its GPU slot."""
        try:
            os.killpg(task, signal.SIGKILL)
        except OSError:
            pass
        try:
            with open(f"/proc/self/task/{self.pid}/children", "rb") as f:
                pids = [int(p) for p in f.read().split()]
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

    def _drop(self, conn: _Conn) -> None:
        conn.close_fds()
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
        zygote.listen()
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
