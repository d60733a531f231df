"""A real Spark standalone cluster on 127.0.0.1: one master and two workers, for the Spark tests.

    python scripts/spark_cluster.py start          # prints `export SEGMENT_SPARK_MASTER=...` lines
    python scripts/spark_cluster.py stop
    python scripts/spark_cluster.py status
    python scripts/spark_cluster.py run -- pytest tests/spark    # start, run, stop whatever happens
    python scripts/spark_cluster.py run --master-port 0 --master-ui-port 0 --worker-ui-port 0 -- CMD

Run it with the Python of the environment that holds pyspark: Spark's launcher (`bin/spark-class`)
is taken from the installed pyspark package, and the workers run Python tasks with that same
interpreter (PYSPARK_PYTHON). Java 17 must be on PATH (or JAVA_HOME); `make spark` installs both.

Each process is `spark-class org.apache.spark.deploy.master.Master ...` or `... worker.Worker ...`,
started in a process group of its own, with its log (stdout and stderr), work and scratch folders
under the cluster folder (default `.spark-cluster/` in the project, cleared at each start and kept
after a stop for reading):

    .spark-cluster/cluster.json            what `stop` and `status` read: process ids, URLs
    .spark-cluster/logs/master.log         .../logs/worker-1.log, worker-2.log
    .spark-cluster/worker-1/work/<app>/<executor>/stderr    each executor's own log
    .spark-cluster/worker-1/local/         shuffle and spill scratch

`start` waits until the master's JSON (http://127.0.0.1:8080/json/) lists every worker as ALIVE,
and fails with one line (and stops what it started) after a timeout or when a process exits early.
`stop` sends SIGTERM to each process group and to every process descended from it, waits for all
of them to exit, and sends SIGKILL to any left after a grace period.

`run -- CMD...` starts the cluster, runs CMD with SEGMENT_SPARK_MASTER (spark://127.0.0.1:7077),
SEGMENT_SPARK_MASTER_UI (http://127.0.0.1:8080) and PYSPARK_PYTHON set, then stops the cluster
whether CMD passes, fails, or is interrupted (Ctrl-C, SIGTERM), and exits with CMD's status.

Ports and the folder come from options or the environment, so that several clusters can run side
by side; a port of 0 picks a free one:

    SEGMENT_SPARK_MASTER_PORT     (7077)  the master's RPC port
    SEGMENT_SPARK_MASTER_UI_PORT  (8080)  the master's web UI and JSON
    SEGMENT_SPARK_WORKER_UI_PORT  (8081)  the first worker's web UI; the next ones follow (8082)
    SEGMENT_SPARK_CLUSTER_DIR     (.spark-cluster)
    SEGMENT_SPARK_START_TIMEOUT   (120)   seconds to wait for every worker to be ALIVE

Exit status: 0 done; 1 the cluster did not start (or `status` found none); 2 bad usage or nothing
to run it with (no pyspark, no java, a port in use, a cluster already running from the folder).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = "cluster.json"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STOP_GRACE_SECONDS = 20.0
POLL_SECONDS = 0.5


class ClusterError(Exception):
    """The cluster cannot start or be found; the message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def say(message: str) -> None:
    """One line of progress, on stderr (stdout carries `start`'s export lines only)."""
    sys.stderr.write(f"spark-cluster: {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Settings:
    """Where the cluster lives and how it is shaped."""

    folder: Path
    master_port: int
    master_ui_port: int
    worker_ui_port: int
    workers: int
    worker_cores: int
    worker_memory: str
    timeout: float


@dataclass(frozen=True)
class Member:
    """One started process: its name (`master`, `worker-1`, ...) and id (also its group id)."""

    name: str
    pid: int


@dataclass(frozen=True)
class State:
    """What `start` records in cluster.json for `stop` and `status`."""

    master: str
    master_ui: str
    members: tuple[Member, ...]

    def write(self, folder: Path) -> None:
        data: dict[str, object] = {"master": self.master, "master_ui": self.master_ui}
        data["members"] = [asdict(m) for m in self.members]
        path = folder / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(data, indent=2) + "\n")
        path.with_suffix(".tmp").replace(path)

    @staticmethod
    def read(folder: Path) -> State | None:
        path = folder / STATE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        members = tuple(Member(str(m["name"]), int(m["pid"])) for m in data["members"])
        return State(str(data["master"]), str(data["master_ui"]), members)


# ---------------------------------------------------------------------------------------
# What the cluster runs with


def spark_home() -> Path:
    """The installed pyspark package folder: it holds bin/spark-class and the jars."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterError(
            f"pyspark is not installed in {sys.executable} (make spark installs it)", status=2
        )
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").is_file() or not (home / "jars").is_dir():
        raise ClusterError(f"{home} has no bin/spark-class or jars/", status=2)
    return home


def check_java() -> None:
    """Fail early, with one line, when Spark's launcher would find no java."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return
    if shutil.which("java") is None:
        raise ClusterError("java not found (make spark installs Java 17)", status=2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether nothing listens on the port (connections closing in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_ports(settings: Settings) -> tuple[int, int, list[int]]:
    """The master, master UI and worker UI ports: 0 picks free ones; a taken port is an error."""
    master = settings.master_port or free_port()
    master_ui = settings.master_ui_port or free_port()
    if settings.worker_ui_port:
        workers = [settings.worker_ui_port + i for i in range(settings.workers)]
    else:
        workers = [free_port() for _ in range(settings.workers)]
    ports = [master, master_ui, *workers]
    if len(set(ports)) != len(ports):
        raise ClusterError(f"the ports overlap: {ports}", status=2)
    taken = [p for p in ports if not port_is_free(p)]
    if taken:
        raise ClusterError(
            f"{HOST}:{', '.join(map(str, taken))} already in use (another cluster? "
            "set SEGMENT_SPARK_MASTER_PORT / _MASTER_UI_PORT / _WORKER_UI_PORT, or 0 for a free one)",
            status=2,
        )
    return master, master_ui, workers


# ---------------------------------------------------------------------------------------
# Processes


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_ours(pid: int) -> bool:
    """Whether pid is still a Spark master or worker (not an unrelated process that reused it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.decode(errors="replace") in (MASTER_CLASS, WORKER_CLASS) for arg in cmdline)


def descendants(pid: int) -> set[int]:
    """Every process below pid (executors, their Python daemons and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def signal_tree(pids: set[int], sig: signal.Signals) -> None:
    """Send sig to each process and to each process group they lead or belong to."""
    groups = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(OSError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def stop_members(members: tuple[Member, ...], popens: dict[int, subprocess.Popen[bytes]]) -> None:
    """Stop the workers, then the master; wait until every process of theirs has exited."""
    for batch in (
        [m for m in members if m.name != "master"],
        [m for m in members if m.name == "master"],
    ):
        pids: set[int] = set()
        for member in batch:
            if member.pid in popens or is_ours(member.pid):
                pids |= {member.pid} | descendants(member.pid)
        if not pids:
            continue
        signal_tree(pids, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        killed = False
        while True:
            for popen in popens.values():
                popen.poll()  # reap our own children, or they stay as zombies
            left = {pid for pid in pids if alive(pid)}
            if not left:
                break
            if time.monotonic() > deadline:
                if killed:
                    say(f"processes {sorted(left)} did not exit after SIGKILL")
                    break
                say(
                    f"SIGKILL to {len(left)} process(es) still running after {STOP_GRACE_SECONDS:.0f} s"
                )
                signal_tree(left, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 5
            time.sleep(0.1)


def launch(
    name: str, args: list[str], env: dict[str, str], folder: Path
) -> subprocess.Popen[bytes]:
    """Start `spark-class ARGS` in a process group of its own, its output in logs/NAME.log."""
    log = folder / "logs" / f"{name}.log"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(env["SPARK_HOME"]) / "bin" / "spark-class"), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            start_new_session=True,
        )


def master_json(master_ui: str) -> dict[str, object] | None:
    """The master's state as its web UI serves it at /json/; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=2) as response:
            data = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive_workers(master_ui: str) -> int | None:
    """How many workers the master's JSON lists as ALIVE; None while it does not answer."""
    data = master_json(master_ui)
    if data is None or data.get("status") != "ALIVE":
        return None
    workers = data.get("workers")
    if not isinstance(workers, list):
        return 0
    return sum(1 for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE")


def wait_for(
    what: str,
    ready: Callable[[], bool],
    members: list[Member],
    popens: dict[int, subprocess.Popen[bytes]],
    settings: Settings,
    deadline: float,
) -> None:
    """Poll ready() until it holds; fail on the deadline or when a started process exits."""
    while not ready():
        for member in members:
            code = popens[member.pid].poll()
            if code is not None:
                raise ClusterError(
                    f"{member.name} exited with status {code} while starting; "
                    f"see {settings.folder / 'logs' / member.name}.log"
                )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{what} after {settings.timeout:.0f} s; see the logs in {settings.folder / 'logs'}"
            )
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------------------
# Commands


def start(settings: Settings) -> tuple[State, dict[int, subprocess.Popen[bytes]]]:
    """Start the master and the workers and wait until every worker is ALIVE."""
    folder = settings.folder
    previous = State.read(folder)
    if previous is not None and any(alive(m.pid) and is_ours(m.pid) for m in previous.members):
        raise ClusterError(
            f"a cluster from {folder} is running ({previous.master}); stop it first", status=2
        )
    home = spark_home()
    check_java()
    master_port, master_ui_port, worker_ui_ports = choose_ports(settings)
    master = f"spark://{HOST}:{master_port}"
    master_ui = f"http://{HOST}:{master_ui_port}"

    # The logs and work folders of one run only. Only what a start writes is removed: the folder
    # itself may be any folder (SEGMENT_SPARK_CLUSTER_DIR).
    for old in [folder / "logs", folder / "master", *folder.glob("worker-*")]:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
    (folder / "logs").mkdir(parents=True)
    base = dict(os.environ)
    base.update(
        SPARK_HOME=str(home),
        SPARK_LOCAL_IP=HOST,
        SPARK_MASTER_HOST=HOST,
        SPARK_LOG_DIR=str(folder / "logs"),
        SPARK_PID_DIR=str(folder),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    base.pop("SPARK_CONF_DIR", None)

    popens: dict[int, subprocess.Popen[bytes]] = {}
    members: list[Member] = []
    deadline = time.monotonic() + settings.timeout
    try:
        say(f"starting the master at {master} (UI {master_ui}); logs in {folder / 'logs'}")
        (folder / "master" / "local").mkdir(parents=True)
        # No REST submission server: it would take port 6066 whatever the other ports are.
        env = dict(
            base,
            SPARK_LOCAL_DIRS=str(folder / "master" / "local"),
            SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
        )
        popen = launch(
            "master",
            [
                MASTER_CLASS,
                *("--host", HOST, "--port", str(master_port), "--webui-port", str(master_ui_port)),
            ],
            env,
            folder,
        )
        popens[popen.pid] = popen
        members.append(Member("master", popen.pid))
        State(master, master_ui, tuple(members)).write(folder)
        # Workers started before the master listens retry only after ~10 s: wait for it first.
        wait_for(
            f"the master did not answer at {master_ui}/json/",
            lambda: alive_workers(master_ui) is not None,
            members,
            popens,
            settings,
            deadline,
        )
        for number, ui_port in enumerate(worker_ui_ports, start=1):
            name = f"worker-{number}"
            work, local = folder / name / "work", folder / name / "local"
            work.mkdir(parents=True)
            local.mkdir(parents=True)
            env = dict(base, SPARK_WORKER_DIR=str(work), SPARK_LOCAL_DIRS=str(local))
            popen = launch(
                name,
                [
                    *(WORKER_CLASS, master, "--host", HOST, "--cores", str(settings.worker_cores)),
                    *("--memory", settings.worker_memory, "--work-dir", str(work)),
                    *("--webui-port", str(ui_port)),
                ],
                env,
                folder,
            )
            popens[popen.pid] = popen
            members.append(Member(name, popen.pid))
        state = State(master, master_ui, tuple(members))
        state.write(folder)
        wait_for(
            f"{settings.workers} workers not ALIVE at {master_ui}/json/",
            lambda: alive_workers(master_ui) == settings.workers,
            members,
            popens,
            settings,
            deadline,
        )
        say(f"{settings.workers} workers ALIVE at {master}")
        return state, popens
    except BaseException:
        stop_members(tuple(members), popens)
        (folder / STATE_FILE).unlink(missing_ok=True)
        raise


def stop(folder: Path, popens: dict[int, subprocess.Popen[bytes]] | None = None) -> None:
    state = State.read(folder)
    if state is None:
        say(f"no cluster recorded in {folder}")
        return
    stop_members(state.members, popens or {})
    (folder / STATE_FILE).unlink(missing_ok=True)
    say(f"stopped {state.master}; logs kept in {folder / 'logs'}")


def exports(state: State) -> str:
    return (
        f"export SEGMENT_SPARK_MASTER={state.master}\n"
        f"export SEGMENT_SPARK_MASTER_UI={state.master_ui}\n"
        f"export PYSPARK_PYTHON={sys.executable}\n"
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop the cluster, as for Ctrl-C."""


@contextlib.contextmanager
def terminating_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception, so that `finally` blocks run."""

    def handler(number: int, _frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(number).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def finish(child: subprocess.Popen[bytes], forward: bool) -> None:
    """Let an interrupted command end: Ctrl-C reached it too (same terminal), SIGTERM did not."""
    for sig, grace in ((signal.SIGTERM, 0.0 if forward else 30.0), (signal.SIGKILL, 10.0)):
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                child.send_signal(sig)
    child.wait()


def run(settings: Settings, command: list[str]) -> int:
    """Start the cluster, run command against it, stop the cluster whatever happens."""
    with terminating_signals_raise():
        popens: dict[int, subprocess.Popen[bytes]] = {}
        child: subprocess.Popen[bytes] | None = None
        try:
            state, popens = start(settings)
            env = dict(
                os.environ,
                SEGMENT_SPARK_MASTER=state.master,
                SEGMENT_SPARK_MASTER_UI=state.master_ui,
                PYSPARK_PYTHON=sys.executable,
            )
            say(f"running {' '.join(command)}")
            child = subprocess.Popen(command, env=env)
            return child.wait()
        except KeyboardInterrupt as interruption:
            say(
                f"interrupted ({interruption.args[0] if interruption.args else 'SIGINT'}); stopping"
            )
            if child is not None:
                finish(child, forward=isinstance(interruption, Terminated))
            return 130
        finally:
            # Ignore further Ctrl-C / SIGTERM while stopping: no process is left behind.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            stop(settings.folder, popens)


def status(folder: Path) -> int:
    state = State.read(folder)
    if state is None:
        say(f"no cluster recorded in {folder}")
        return 1
    up = [m.name for m in state.members if alive(m.pid) and is_ours(m.pid)]
    workers = alive_workers(state.master_ui)
    say(
        f"{state.master}: {len(up)} of {len(state.members)} processes running ({', '.join(up)}); "
        f"{workers if workers is not None else 'no answer:'} workers ALIVE"
    )
    return 0 if len(up) == len(state.members) else 1


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="spark_cluster.py",
        description="A Spark standalone cluster on 127.0.0.1 (one master, two workers) for tests.",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "run"])
    folder = os.environ.get("SEGMENT_SPARK_CLUSTER_DIR") or str(ROOT / ".spark-cluster")
    parser.add_argument("--dir", default=folder, help="cluster folder (default %(default)s)")
    parser.add_argument(
        "--master-port", type=int, default=env_int("SEGMENT_SPARK_MASTER_PORT", 7077)
    )
    parser.add_argument(
        "--master-ui-port", type=int, default=env_int("SEGMENT_SPARK_MASTER_UI_PORT", 8080)
    )
    parser.add_argument(
        "--worker-ui-port", type=int, default=env_int("SEGMENT_SPARK_WORKER_UI_PORT", 8081)
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="2g")
    parser.add_argument(
        "--timeout", type=float, default=env_int("SEGMENT_SPARK_START_TIMEOUT", 120)
    )
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `--` is the command `run` runs; options go anywhere before it.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.argv = argv[split + 1 :]
    settings = Settings(
        folder=Path(args.dir).resolve(),
        master_port=args.master_port,
        master_ui_port=args.master_ui_port,
        worker_ui_port=args.worker_ui_port,
        workers=args.workers,
        worker_cores=args.worker_cores,
        worker_memory=args.worker_memory,
        timeout=args.timeout,
    )
    if args.command == "run" and not args.argv:
        parser.error("run needs a command: run [OPTIONS] -- COMMAND [ARGS...]")
    if args.command != "run" and args.argv:
        parser.error(f"{args.command} takes no command")
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse(argv)
    try:
        if args.command == "start":
            state, _ = start(settings)
            sys.stdout.write(exports(state))
            return 0
        if args.command == "stop":
            stop(settings.folder)
            return 0
        if args.command == "status":
            return status(settings.folder)
        return run(settings, args.argv)
    except ClusterError as error:
        say(str(error))
        return error.status
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
