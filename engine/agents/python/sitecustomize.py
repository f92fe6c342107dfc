"""leaklab's heap agent for CPython: tracemalloc, served on a loopback port.

leaklab puts this file's directory first on PYTHONPATH for a command it
starts, so that CPython's `site` imports it at startup (not under -S, -I or
-E). It does nothing unless LEAKLAB_PROFILE_LISTEN (loopback HOST:PORT) is
set; then it
  - starts tracemalloc with LEAKLAB_PROFILE_FRAMES frames per traceback (32
    by default: enough to get from grpc's internals out to the caller of the
    service's client helper);
  - serves that port from a daemon thread, which never keeps the process
    alive: a client sends the line `profile` and gets one JSON document,
      {"runtime": "cpython", "pid", "frames", "traced_bytes",
       "stats": [{"size", "count", "traceback": [{"file", "line", "function"}]}],
       "dropped_bytes", "dropped_count", "import_bytes", "import_count"}
    snapshot.statistics('traceback') after a collection, each traceback
    innermost frame first, each function named from its file's source
    (Class.method; "<module>"; "" without source). Left out: the agent's own
    allocations; those made by an import (module code, classes, globals:
    made once, most of the traces), summed in import_*; and the stats smaller
    than LEAKLAB_PROFILE_MIN_BYTES (1024 by default), summed in dropped_*
    (counts are allocated blocks). An error answers {"error": "..."}.
With LEAKLAB_PROFILE_EXIT (a file path) it also writes that document to the
file as the program exits normally (atexit): the end of a program that ends
its own load, which leaklab could not ask in time.
It takes the variable out of the environment, so that the Python processes
the command starts do not try the same port (a forked child stops tracing),
and then runs the sitecustomize it shadows, if there is one further on
sys.path.

What it costs (grpcio 1.85, CPython 3.11, 32 frames): every allocation through
Python's allocators is traced, so startup that imports grpc takes 3 s of CPU
instead of 0.13 and 25 MB more RSS, and a request of a small grpcio service
2-3 times the CPU. Memory that C libraries malloc themselves (gRPC C-core's)
is not traced. A profile takes 1.5-3 s of CPU, most of it holding the GIL,
and the first one leaves the process about 40 MB larger (the snapshot's
freed objects do not go back to the system); later ones, a few MB at most.
"""

import os


def _start(listen):
    import ast
    import atexit
    import gc
    import ipaddress
    import json
    import socket
    import sys
    import threading
    import tracemalloc

    frames = min(_number("LEAKLAB_PROFILE_FRAMES", 32, 1), 1000)
    floor = _number("LEAKLAB_PROFILE_MIN_BYTES", 1024, 0)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, int(port), 0, socket.SOCK_STREAM)[0]
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError("not a loopback address")
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
        server.listen(4)
    except (OSError, ValueError) as err:
        # Listening before tracemalloc starts: a process it cannot serve pays nothing.
        print(f"leaklab-profile: cannot listen on {listen}: {err}", file=sys.stderr, flush=True)
        return
    # Whatever has this file or tracemalloc's on its stack is the agent's own (its thread, its caches),
    # left out; what has importlib's is a module's import (its code, classes, globals: made once, and
    # most of the traces), counted in import_bytes and import_count. (A tracemalloc.Filter with
    # all_frames would do, a hundred times slower.)
    own = {__file__, tracemalloc.__file__}
    imports = {"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"}

    # Each file's functions, (first line, last line, name), parsed once.
    spans = {}
    names = {}

    def function(file, line):
        key = (file, line)
        if key not in names:
            if file not in spans:
                spans[file] = _functions(ast, file)
            if spans[file] is None:
                names[key] = ""
            else:
                inside = [span for span in spans[file] if span[0] <= line <= span[1]]
                names[key] = max(inside)[2] if inside else "<module>"
        return names[key]

    def profile():
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        stats, dropped, imported = [], [0, 0], [0, 0]
        for stat in tracemalloc.take_snapshot().statistics("traceback"):
            # Its frames as (file, line), oldest first; _frames spares a Frame object per frame (seconds).
            raw = getattr(stat.traceback, "_frames", None) or [(f.filename, f.lineno) for f in stat.traceback]
            files = {file for file, _ in raw}
            if files & own:
                continue
            if files & imports or stat.size < floor:
                total = imported if files & imports else dropped
                total[0] += stat.size
                total[1] += stat.count
                continue
            traceback = [
                {"file": file, "line": line, "function": function(file, line)}
                for file, line in reversed(raw)  # innermost first here
            ]
            stats.append({"size": stat.size, "count": stat.count, "traceback": traceback})
        return {
            "runtime": "cpython",
            "pid": os.getpid(),
            "frames": tracemalloc.get_traceback_limit(),
            "traced_bytes": traced,
            "stats": stats,
            "dropped_bytes": dropped[0],
            "dropped_count": dropped[1],
            "import_bytes": imported[0],
            "import_count": imported[1],
        }

    def answer(conn):
        try:
            conn.settimeout(10)
            with conn.makefile("rb") as request:
                line = request.readline(1024).decode("utf-8", "replace").strip()
            document = profile() if line == "profile" else {"error": f"unknown request {line}"}
        except Exception as err:  # noqa: BLE001 - every failure becomes the answer
            document = {"error": f"{type(err).__name__}: {err}"}
        conn.sendall(json.dumps(document, separators=(",", ":")).encode() + b"\n")

    def serve():
        while True:
            try:
                conn, _ = server.accept()
                with conn:
                    answer(conn)
            except Exception:  # noqa: BLE001 - a client gone away must not end the agent
                pass

    exit_file = os.environ.pop("LEAKLAB_PROFILE_EXIT", "")

    def at_exit():
        if not exit_file or not tracemalloc.is_tracing():
            return
        try:
            document = profile()
        except Exception as err:  # noqa: BLE001 - the file says what failed
            document = {"error": f"{type(err).__name__}: {err}"}
        try:
            with open(exit_file + ".part", "w", encoding="utf-8") as out:
                json.dump(document, out, separators=(",", ":"))
            os.replace(exit_file + ".part", exit_file)
        except OSError:
            pass

    def forked():
        # A forked child has no server thread and cannot have the port: it is not profiled.
        server.close()
        tracemalloc.stop()

    try:
        tracemalloc.start(frames)
        threading.Thread(target=serve, name="leaklab-profile", daemon=True).start()
        atexit.register(at_exit)
        os.register_at_fork(after_in_child=forked)
    except Exception:
        forked()
        raise


def _number(name, default, least):
    """The integer in env variable name if it is at least least, else default."""
    try:
        value = int(os.environ.get(name, ""))
        return value if value >= least else default
    except ValueError:
        return default


def _functions(ast, file):
    """[(first line, last line, name)] of every def in file: Class.method in a class; None without source."""
    if not file.endswith(".py"):
        return None
    found = []
    # Only statements can hold a def: the walk goes no deeper than they nest.
    blocks = (ast.stmt, ast.excepthandler, getattr(ast, "match_case", ast.excepthandler))

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((child.lineno, child.end_lineno, prefix + child.name))
                walk(child, "")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            elif isinstance(child, blocks):
                walk(child, prefix)

    try:
        with open(file, "rb") as source:
            walk(ast.parse(source.read()), "")
    except (OSError, SyntaxError, ValueError, RecursionError):
        return None
    return found


def _chain():
    """Runs the sitecustomize this one shadows, the next on sys.path, as `site` would have."""
    import importlib.machinery
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    after = dirs.index(here) + 1 if here in dirs else 0
    later = [entry for entry, path in zip(sys.path[after:], dirs[after:]) if path != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    # The other takes the name `sitecustomize`, as it would have had; this one stays loaded under another.
    sys.modules["_leaklab_sitecustomize"] = sys.modules[__name__]
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - reported as `site` reports it
        sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(err).__name__}: {err}\n")


_listen = os.environ.pop("LEAKLAB_PROFILE_LISTEN", "")
if _listen:
    try:
        _start(_listen)
    except Exception:  # noqa: BLE001 - the agent must never break the program it profiles
        pass
try:
    _chain()
except Exception:  # noqa: BLE001
    pass
