"""Warm worker processes for the local runner: imported once, alongside the launcher, then forked.

Beam's local runner starts its worker processes only once the pipeline runs, and each then spends
about a second and a half importing Beam's worker and the project's stages (pyarrow, polars,
pandera) before it can take any data, while the launcher sits idle. The launcher itself spends as
long importing Beam first, with the machine's other core idle. On a laptop that is pure waiting,
at every run whatever its size.

So ``python -m pipeline`` first starts a *fork server* (``start``, before it imports Beam): one
process that imports everything a worker needs while the launcher imports and plans, freezes it
out of the collector's reach (``gc.freeze``: forked children then share those pages instead of
copying them), and waits. The runner's worker command is ``python -m pipeline.warm_workers
attach``: a small process that hands its environment (the runner's control and logging addresses,
the pipeline options) and its standard streams to the server, which forks a child that runs Beam's
own worker main, as the ordinary worker process would; ``attach`` exits with that worker's exit
code. Two workers cost one import instead of two, and no worker waits for one.

Forking is safe here because the server is a process of our own that only imported modules: no
gRPC channel, no polars thread pool (created on first use, in each child), and the allocators
(jemalloc, OpenBLAS) that start threads at import handle ``fork``.

Nothing is lost when this does not apply: no server (a test calling the launcher in-process, or
the server failed) and ``attach`` turns itself into Beam's ordinary worker (``exec``), saying so.
The server exits when the launcher does (a pipe, its lifeline, reaches end of file), after its
children.

This module imports only the standard library at the top: it runs before anything else.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

DIR_VARIABLE = "RLVT_WARM_WORKERS"
"""Environment variable naming the fork server's folder (set by ``start``; the runner's worker
commands inherit it)."""
SOCKET = "server.sock"
MAX_SOCKET_PATH = 104
"""Bytes in a Unix socket's path, at most (108 on Linux, 104 on macOS, the terminating zero included)."""
SERVED = "served"
"""A line per worker the server forked (its process id), in the server's folder."""
BEAM_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
ATTACH_COMMAND = "-m pipeline.warm_workers attach"
ACCEPTED = b"accepted\n"
FALLBACK = "no warm worker server"

# Flags after which the launcher does not run the default local import on worker processes: no server.
_NOT_DEFAULT = ("--runner", "--direct_running_mode", "--input_subscription", "--template_location",
                "--environment_type", "-h", "--help")

_lifelines: list[int] = []
_servers: list[subprocess.Popen] = []


def wanted(argv: list[str]) -> bool:
    """Whether an import with these arguments runs on local worker processes the default way, where warm
    workers apply, on a system that can fork: no runner, running mode or subscription named, and either
    ``--direct_num_workers`` above one or, without it, an input the launcher will not run in its own
    process (``pipeline.local_runner.one_process``, foreseen here from the sizes of the local files the
    ``--input`` patterns match; a remote or unmatched pattern counts as large). Foreseen wrongly, the
    import is only slower to start: a server nobody attaches to, or Beam's own worker processes."""
    if not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX"):
        return False
    if any(arg.split("=", 1)[0] in _NOT_DEFAULT for arg in argv):
        return False
    workers = flag_values(argv, "--direct_num_workers")
    if workers:
        return workers[-1].strip() != "1"
    files = _local_files(flag_values(argv, "--input"))
    if files is None:
        return True
    from pipeline.local_runner import one_process

    return not one_process(files)


def flag_values(argv: list[str], flag: str) -> list[str]:
    """The values given to ``flag`` (``--flag value`` or ``--flag=value``), in order."""
    found = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            found.append(arg[len(flag) + 1:])
    return found


def _local_files(patterns: list[str]) -> list[tuple[str, int]] | None:
    """(path, size) of the local files the ``--input`` patterns match (a file whose name holds glob
    characters taken by its name, as the launcher does), or None when there are none, one is not local
    (``gs://…``) or one matches nothing."""
    found: dict[str, int] = {}
    for pattern in patterns:
        if "://" in pattern:
            return None
        paths = [pattern] if os.path.isfile(pattern) else glob.glob(pattern)
        sizes = {os.path.abspath(p): os.path.getsize(p) for p in paths if os.path.isfile(p)}
        if not sizes:
            return None
        found.update(sizes)
    return sorted(found.items()) or None


def start() -> str | None:
    """Start the fork server; returns its folder (also set in ``os.environ[DIR_VARIABLE]``), or None
    when it cannot be (no writable temporary folder, or one whose path is too long for a socket):
    the import then runs on Beam's own worker processes, only slower to start."""
    try:
        folder = tempfile.mkdtemp(prefix="rlvt-warm-")
    except OSError:
        return None
    if len(os.path.join(folder, SOCKET).encode()) >= MAX_SOCKET_PATH:
        os.rmdir(folder)
        return None
    read_end, write_end = os.pipe()
    # the write end stays open in this process only: when it exits, the server sees end of file
    os.set_inheritable(write_end, False)
    _servers.append(subprocess.Popen(
        [sys.executable, "-m", "pipeline.warm_workers", "serve", folder, str(read_end)],
        pass_fds=(read_end,), stdin=subprocess.DEVNULL))
    os.close(read_end)
    _lifelines.append(write_end)
    os.environ[DIR_VARIABLE] = folder
    return folder


def worker_command() -> str | None:
    """The runner's worker command line when a fork server was started, else None. The runner starts it
    through ``/bin/sh -c``; ``exec`` replaces that shell (dash forks otherwise), whose death by a Ctrl-C
    the runner would report as a worker crash."""
    if not os.environ.get(DIR_VARIABLE):
        return None
    return f"exec {shlex.quote(sys.executable)} {ATTACH_COMMAND}"


def stop(timeout: float = 10.0) -> None:
    """End the fork server (the launcher's exit does it too), wait for it (it waits for its
    children), and remove its folder."""
    while _lifelines:
        os.close(_lifelines.pop())
    while _servers:
        server = _servers.pop()
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    folder = os.environ.pop(DIR_VARIABLE, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def discard() -> None:
    """End a fork server no worker will attach to (the launcher runs the import in its own process, the
    input being smaller than foreseen: ``gs://`` files, say) at once, without waiting for its imports."""
    for server in _servers:
        server.kill()
    stop()


# --------------------------------------------------------------------------- the fork server
def serve(folder: str, lifeline: int) -> None:
    """Listen at once (an attach may come while the imports run), import what a worker needs, then
    fork a worker for each attach until the lifeline ends."""
    # Ctrl-C reaches the whole process group: the launcher stops, and the server follows it through
    # its lifeline instead of printing a traceback of its own (its workers ignore it too: _run_worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: list[int] = []
    lock = threading.Lock()

    def watch() -> None:
        os.read(lifeline, 1)  # returns at end of file: the launcher is gone
        with lock:  # no fork from here on
            for pid in children:  # reaped, so their CPU time counts for the launcher's process tree
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            os._exit(0)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(folder, SOCKET))
    listener.listen(8)

    import importlib

    worker_main = importlib.import_module(BEAM_WORKER_MAIN)
    _import_stages()

    while True:
        conn, _ = listener.accept()
        try:
            env, cwd, fds = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            continue
        with lock:
            pid = os.fork()
            if pid:
                children.append(pid)
                with open(os.path.join(folder, SERVED), "a") as served:
                    served.write(f"{pid}\n")
        if pid:
            conn.close()
            for fd in fds:
                os.close(fd)
            continue
        listener.close()
        os.close(lifeline)
        _run_worker(worker_main, conn, env, cwd, fds)


def _run_worker(worker_main, conn: socket.socket, env: dict, cwd: str, fds: list[int]) -> None:
    """In the forked child: take the attach's streams, environment and folder, run Beam's worker,
    send its exit code back, and leave."""
    # Ctrl-C reaches the whole process group; the launcher stops the run and then the workers, which
    # would otherwise each print a KeyboardInterrupt traceback (pipeline.interrupts)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.sendall(ACCEPTED)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    code = 0
    try:
        worker_main.main([BEAM_WORKER_MAIN])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # Beam's main logs it (critical) before raising
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.sendall(f"{code}\n".encode())
        except OSError:
            pass
    os._exit(code)


def _import_stages() -> None:
    """What a worker's first bundle would import (the stages, their libraries, the pandera model),
    then the worker's collector settings (``prepare_worker_gc``: ``gc.freeze`` before forking)."""
    import transforms.bigquery.write  # noqa: F401
    import transforms.files.write  # noqa: F401
    import transforms.stages.dofns  # noqa: F401  (pyarrow, polars, Beam's transforms)
    from transforms.core.records import prepare_worker_gc
    from transforms.stages.validate import check_plan

    check_plan()
    prepare_worker_gc()


def _receive(conn: socket.socket) -> tuple[dict, str, list[int]]:
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    chunks = [message]
    while message and not message.endswith(b"\n"):
        message = conn.recv(1 << 20)
        chunks.append(message)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("an attach request carries three file descriptors")
    request = json.loads(b"".join(chunks))
    return request["env"], request["cwd"], fds


# --------------------------------------------------------------------------- the runner's worker command
def attach() -> None:
    """Hand this process's environment and standard streams to the fork server and exit with its
    worker's exit code; without a server, become Beam's ordinary worker process. Either way SIGINT is
    ignored (and stays so across ``exec``): a Ctrl-C is the launcher's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    folder = os.environ.get(DIR_VARIABLE)
    if folder:
        request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(os.path.join(folder, SOCKET))
            socket.send_fds(conn, [request], [0, 1, 2])
            # no time limit: a server still importing on a loaded machine answers late, and one that
            # died closes the connection (a late answer after giving up would start a second
            # worker under the same id)
            if _read_line(conn) == ACCEPTED:
                reply = _read_line(conn)
                os._exit(int(reply) if reply.strip().lstrip(b"-").isdigit() else 1)
        except OSError:
            pass
        print(f"warm_workers: {FALLBACK} at {folder}: starting Beam's own worker", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", BEAM_WORKER_MAIN])


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            return data
        data += chunk
    return data


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["attach"]:
        attach()
    else:
        sys.exit(f"usage: python -m pipeline.warm_workers serve FOLDER FD | attach  (not {sys.argv[1:]})")
