"""The fuzz harness's worker (run as ``python fuzz_server.py CASES.json RESULTS.json``).

It imports edgekit and the runtimes once, then runs each case — an ``edgekit`` command line on one
mutated file — in a forked child with its stdout/stderr in files and a timeout, and records how
the child ended: exit code, or the signal that killed it (a native crash), or ``"timeout"`` (a
hang, killed). The test (``test_fuzz.py``) judges the records. Forking keeps a few hundred cases
to seconds: the imports are paid once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time


def run_case(args: list[str], timeout: float) -> dict:
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: one edgekit command, nothing else
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 98
        try:
            from edgekit.cli import main

            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 97)
        except BaseException:  # an exception edgekit's CLI let through: a traceback, a failure
            import traceback

            traceback.print_exc()
            code = 99
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "timeout"
        else:
            time.sleep(0.005)
    err.seek(0)
    out.seek(0)
    record = {"args": args, "stderr": err.read(1 << 16).decode("utf-8", "replace"),
              "stdout_bytes": len(out.read())}
    if status == "timeout":
        record["ended"] = "timeout"
    elif os.WIFSIGNALED(status):
        record["ended"] = f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        record["ended"] = "exit"
        record["code"] = os.WEXITSTATUS(status)
    return record


def main() -> None:
    cases_path, results_path = sys.argv[1], sys.argv[2]
    # Pay the imports once, before forking (no runtime threads exist yet: sessions make them).
    import edgekit.cli  # noqa: F401
    import edgekit.inspect  # noqa: F401
    import edgekit.runtimes.litert  # noqa: F401
    import edgekit.runtimes.onnxruntime  # noqa: F401

    for mod in ("onnxruntime", "ai_edge_litert.interpreter", "onnx", "edgekit.lint"):
        try:
            __import__(mod)
        except ImportError:
            pass
    cases = json.loads(open(cases_path).read())
    timeout = float(os.environ.get("EDGEKIT_FUZZ_TIMEOUT", "60"))
    results = [run_case(c, timeout) for c in cases]
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
