"""Warm worker processes for the local runner: started with the launcher, not after it.

Beam's local runner starts its worker processes only once the pipeline runs, and each then spends
a second or more importing Beam's worker and the project's stages (pyarrow, polars, pandera)
before it can take any data, while the launcher sits idle. The launcher itself spends as long
importing Beam first, with the machine's other core idle. On a laptop both are pure waiting, at
every run whatever its size.

So ``python -m pipeline`` starts the worker processes first (``start``, before it imports Beam):
each imports everything a worker needs while the launcher imports and plans, then waits. The
runner's worker command is ``python -m pipeline.warm_workers attach``: a small process that hands
its environment (the runner's control and logging addresses, the pipeline options) and its
standard streams to the first warm process that is free, and exits with that worker's exit code.
The warm process then runs Beam's own worker main, as the ordinary worker process would.

Nothing is lost when this does not apply: no warm process left (a second pipeline in the same
launcher), a warm process that failed, or none started (a test calling the launcher in-process),
and ``attach`` turns itself into Beam's ordinary worker (``exec``). A warm process that is never
attached exits when the launcher does (a pipe, its lifeline, reaches end of file).

This module imports only the standard library at the top: it runs before anything else.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading

LOCAL_WORKERS = 2
"""Worker processes of a local import (the machine this was tuned on has two cores)."""
DIR_VARIABLE = "RLVT_WARM_WORKERS"
"""Environment variable naming the folder of the warm processes' sockets (set by ``start``)."""
BEAM_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
ATTACH_COMMAND = "-m pipeline.warm_workers attach"
ACCEPTED = b"accepted\n"
WAIT_FOR_WARM_SECONDS = 120.0
"""How long ``attach`` waits for a warm process to finish its imports (seconds; it is normally
ready before the runner asks)."""

# Flags after which the launcher does not run the default two-process local import: no warm processes.
_NOT_DEFAULT = ("--runner", "--direct_running_mode", "--direct_num_workers", "--input_subscription",
                "--template_location", "--environment_type", "-h", "--help")


def wanted(argv: list[str], workers: int) -> int:
    """How many warm processes an import with these arguments would use: ``workers`` for the default
    local run (no runner or running mode named, files as input), else 0."""
    for arg in argv:
        if arg.split("=", 1)[0] in _NOT_DEFAULT:
            return 0
    return workers


def start(count: int) -> str | None:
    """Start ``count`` warm processes; returns their folder (also set in ``os.environ[DIR_VARIABLE]``
    so the runner's worker commands inherit it), or None when ``count`` is 0."""
    if count <= 0:
        return None
    folder = tempfile.mkdtemp(prefix="rlvt-warm-")
    read_end, write_end = os.pipe()
    # the write end stays open in this process only: when it exits, the warm processes see end of file
    os.set_inheritable(write_end, False)
    for k in range(count):
        _processes.append(subprocess.Popen(
            [sys.executable, "-m", "pipeline.warm_workers", "serve", os.path.join(folder, f"{k}.sock"),
             str(read_end)],
            pass_fds=(read_end,), stdin=subprocess.DEVNULL))
    os.close(read_end)
    _lifelines.append(write_end)
    os.environ[DIR_VARIABLE] = folder
    return folder


_lifelines: list[int] = []
_processes: list[subprocess.Popen] = []


def worker_command() -> str | None:
    """The runner's worker command line when warm processes were started, else None."""
    if not os.environ.get(DIR_VARIABLE):
        return None
    return f"{shlex.quote(sys.executable)} {ATTACH_COMMAND}"


def stop(timeout: float = 10.0) -> None:
    """End the warm processes that were never attached (the launcher's exit does it too), wait for all
    of them (an attached one exits as its worker ends), and remove their folder."""
    while _lifelines:
        os.close(_lifelines.pop())
    while _processes:
        process = _processes.pop()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    folder = os.environ.pop(DIR_VARIABLE, None)
    if folder:
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(folder)
        except OSError:
            pass


# --------------------------------------------------------------------------- the warm process
def serve(path: str, lifeline: int) -> None:
    """Listen at ``path`` at once (an attach may come while the imports run), import what a worker
    needs, then run Beam's worker for the first attach; exit if the lifeline ends first."""
    attached = threading.Event()

    def watch() -> None:
        os.read(lifeline, 1)  # returns at end of file: the launcher is gone
        if not attached.is_set():
            os._exit(0)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)

    import importlib

    worker_main = importlib.import_module(BEAM_WORKER_MAIN)
    _import_stages()

    while True:
        conn, _ = listener.accept()
        try:
            env, cwd, fds = _receive(conn)
            break
        except (OSError, ValueError):
            conn.close()
    attached.set()
    listener.close()
    os.unlink(path)
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
    """What the first bundle would import: the stages, their libraries, the pandera model; then the
    worker's collector settings (``prepare_worker_gc``), as a Beam worker's first DoFn would."""
    import transforms.stages  # noqa: F401  (pyarrow, polars, Beam's transforms)
    import transforms.write_bigquery  # noqa: F401
    import transforms.write_files  # noqa: F401
    from schemas.validation import envelope_schema
    from transforms.records import prepare_worker_gc

    envelope_schema()
    prepare_worker_gc()


def _receive(conn: socket.socket) -> tuple[dict, str, list[int]]:
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    chunks = [message]
    while message and not message.endswith(b"\n"):
        message = conn.recv(1 << 20)
        chunks.append(message)
    request = json.loads(b"".join(chunks))
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("an attach request carries three file descriptors")
    return request["env"], request["cwd"], fds


# --------------------------------------------------------------------------- the runner's worker command
def attach() -> None:
    """Hand this process's environment and standard streams to a free warm process and exit with its
    worker's exit code; with none free, become Beam's ordinary worker process."""
    folder = os.environ.get(DIR_VARIABLE)
    request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
    names = sorted(os.listdir(folder)) if folder and os.path.isdir(folder) else []
    # the runner numbers its workers (worker_0, worker_1…): each asks a different warm process first
    digits = "".join(c for c in os.environ.get("WORKER_ID", "") if c.isdigit())
    first = int(digits) % len(names) if digits and names else 0
    for name in names[first:] + names[:first]:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(os.path.join(folder, name))
            socket.send_fds(conn, [request], [0, 1, 2])
            if _read_line(conn, WAIT_FOR_WARM_SECONDS) != ACCEPTED:
                continue  # taken by another attach, or failed while importing
        except OSError:
            conn.close()
            continue
        reply = _read_line(conn, None)
        os._exit(int(reply) if reply.strip().lstrip(b"-").isdigit() else 1)
    if folder:
        print(f"warm_workers: no warm worker process free in {folder}: starting Beam's own worker",
              file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", BEAM_WORKER_MAIN])


def _read_line(conn: socket.socket, timeout: float | None) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([conn], [], [], timeout)
        if not ready:
            return b""
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
        sys.exit(f"usage: python -m pipeline.warm_workers serve PATH FD | attach  (not {sys.argv[1:]})")
