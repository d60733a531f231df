"""`segment` runs in processes of their own that start with every module already imported.

A process started with `python tests/preloaded.py` imports the package and the libraries its
stages import, then reads requests, one JSON line each on stdin, and answers with JSON lines on
stdout. Each request forks a child that runs `segment ARGS` through the console script's entry point
(`segmentation.cli:entry`, Ctrl-C raising KeyboardInterrupt as in a new interpreter), in its own
working folder, environment, CPU affinity and output files. The answers are the child's pid,
`"stopped"` whenever it stops itself (SIGSTOP), and its return code, negative for the signal that
ended it, as `subprocess` gives it.

The imports, seconds of a run that the fault tests would otherwise pay at each run they kill, are
done once; the runs themselves are processes of their own, so that a SIGKILL at a fault point
leaves exactly what it leaves any run. `PreloadedSegment` is the tests' side of it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import select
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

READY = "ready"
STOPPED = "stopped"
TIMEOUT = 300
"""Seconds a run, or the start of the preloaded process, may take."""


def _run_child(request: dict[str, Any], answers: IO[str]) -> None:
    """In the forked child: become the run the request asks for; never returns."""
    code = 1
    try:
        answers.close()
        # Output files first, so that whatever goes wrong from here is in the run's stderr.
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        # As a new interpreter whose parent left SIGINT at its default: Ctrl-C raises.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if request["one_core"]:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["segment", *request["args"]]
        from segmentation.cli import entry

        try:
            entry()  # the console script itself: it ends the process with the run's status
        except KeyboardInterrupt:
            # As the interpreter ends on an uncaught KeyboardInterrupt: killed by SIGINT.
            traceback.print_exc()
            atexit._run_exitfuncs()
            code = -signal.SIGINT
    except BaseException:  # before the run started: the run's stderr says why it failed
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


def serve() -> None:
    """Import everything a run imports, then run the requests on stdin one at a time."""
    import segmentation

    for module in pkgutil.walk_packages(segmentation.__path__, "segmentation."):
        if not module.name.startswith("segmentation.spark"):
            importlib.import_module(module.name)
    # Answers go to the original stdout; anything printed here (a library's import) goes nowhere.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    answers.write(json.dumps(READY) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request, answers)
        answers.write(json.dumps({"pid": pid}) + "\n")
        while True:
            _, status = os.waitpid(pid, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                answers.write(json.dumps(STOPPED) + "\n")
                continue
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answers.write(json.dumps({"returncode": code}) + "\n")
            break


@dataclass
class ForkedRun:
    """A run forked from the preloaded process: its pid, then how it ended and what it wrote."""

    runs: PreloadedSegment
    pid: int
    args: list[str]
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = None

    def wait_stopped(self) -> None:
        """Wait until the run stops itself (SIGSTOP); fail if it ends instead."""
        answer = self.runs.answer(self)
        if answer != STOPPED:
            self.returncode = int(answer)
        assert answer == STOPPED, f"the run ended before its fault point (exit {answer})"

    def wait(self) -> int:
        """Wait until the run ends (letting it go on if it stops): its return code."""
        while self.returncode is None:
            answer = self.runs.answer(self)
            if answer != STOPPED:
                self.returncode = int(answer)
        return self.returncode

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")


class PreloadedSegment:
    """The tests' side: one preloaded process, `segment` runs forked from it one at a time.

    The process is started at once and imports in the background; `start` (or `ready`) waits
    for it.

    Parameters
    ----------
    log
        Where the preloaded process writes its own stderr (shown when it ends unexpectedly).
    """

    def __init__(self, log: Path) -> None:
        self.log = log
        self._pending = b""
        self._last: ForkedRun | None = None
        with log.open("wb") as errors:
            self._process = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        self._ready = False

    def ready(self) -> None:
        """Wait until the process has imported everything (it starts to at once, in the
        background)."""
        if not self._ready and self._next(TIMEOUT) != READY:
            raise RuntimeError(f"the preloaded process did not say {READY!r} in {TIMEOUT} s")
        self._ready = True

    def _next(self, timeout: float) -> Any:
        """The next answer; None if none came within `timeout` seconds."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._pending:
            if not select.select([fd], [], [], timeout)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self._process.wait()
                raise RuntimeError(
                    f"the preloaded process ended (exit {self._process.returncode}):\n"
                    + self.log.read_text(encoding="utf-8", errors="replace")
                )
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def answer(self, run: ForkedRun) -> Any:
        """The run's next answer: STOPPED or its return code. A run that gives none within
        TIMEOUT seconds is killed, as subprocess's `communicate(timeout=...)` fails a test."""
        answer = self._next(TIMEOUT)
        if answer is None:
            os.kill(run.pid, signal.SIGKILL)
            while isinstance(self._next(TIMEOUT), str):
                pass
            raise subprocess.TimeoutExpired(["segment", *run.args], TIMEOUT)
        return answer if answer == STOPPED else answer["returncode"]

    def start(
        self, root: Path, args: list[str], env: dict[str, str], outputs: Path, *, one_core: bool
    ) -> ForkedRun:
        """Start `segment ARGS` in `root` with `env` (the whole environment) in a forked process,
        on one core if `one_core` (as `os.sched_setaffinity` allows it), its stdout and stderr
        written to `outputs`.stdout and `outputs`.stderr. Runs one at a time: the previous one
        is waited for first (a test that failed may have left it unfinished)."""
        self.ready()
        if self._last is not None:
            self._last.wait()
        run = ForkedRun(
            self, 0, args, outputs.with_suffix(".stdout"), outputs.with_suffix(".stderr")
        )
        request = {
            "cwd": str(root),
            "args": args,
            "env": env,
            "stdout": str(run.stdout_path),
            "stderr": str(run.stderr_path),
            "one_core": one_core,
        }
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()
        answer = self._next(TIMEOUT)
        if answer is None:
            raise RuntimeError(f"the preloaded process did not start a run in {TIMEOUT} s")
        run.pid = int(answer["pid"])
        self._last = run
        return run

    def close(self) -> None:
        """End the process: it ends when its stdin does, once its imports are done."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


if __name__ == "__main__":
    serve()
