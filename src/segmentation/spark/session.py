"""The Spark session a run uses: checked before it starts, so a missing install or an unreachable
master is one line within seconds, not a JVM stack trace after a minute of retries."""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.config import SparkConfig
from segmentation.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG_SETTINGS = Path(__file__).with_name("log4j2.properties")
"""The driver logs errors only: the run's own lines say what happens."""
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
INSTALL_HINT = "run `make spark` (installs Java 17 and pyspark)"
MASTER_TIMEOUT_SECONDS = 5.0


def check_installed() -> None:
    """Refuse at once when pyspark or a Java runtime of version 17 or later is missing."""
    if importlib.util.find_spec("pyspark") is None:
        raise EngineError(f"engine: spark needs pyspark, which is not installed; {INSTALL_HINT}")
    java = _java()
    if java is None:
        raise EngineError(
            f"engine: spark needs Java 17 or later, and none was found; {INSTALL_HINT}"
        )
    version = _java_version(java)
    if version is not None and version < 17:
        raise EngineError(
            f"engine: spark needs Java 17 or later, and {java} is Java {version}; {INSTALL_HINT}"
        )


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _java_version(java: str) -> int | None:
    try:
        shown = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    if found is None:
        return None
    major = int(found.group(1))
    # Java 8 and before call themselves 1.8.
    return int(found.group(2) or 0) if major == 1 else major


def master_addresses(master: str) -> list[tuple[str, int]]:
    """The host and port of each master of a standalone cluster URL (`spark://a:7077,b:7077`);
    empty for masters that are not a standalone cluster (local, yarn, k8s)."""
    if not master.startswith("spark://"):
        return []
    addresses = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.rpartition(":")
        addresses.append((host or part, int(port) if port.isdigit() else 7077))
    return addresses


def on_this_machine(master: str) -> bool:
    """True for local mode and for a standalone cluster whose masters are all on the loopback."""
    addresses = master_addresses(master)
    if addresses:
        return all(host in LOOPBACK for host, _ in addresses)
    return master.startswith("local")


def check_master(master: str, timeout: float = MASTER_TIMEOUT_SECONDS) -> None:
    """Refuse when no master of a standalone cluster answers: Spark itself retries for a minute."""
    addresses = master_addresses(master)
    reasons = []
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            reasons.append(exc.strerror or type(exc).__name__)
    if addresses:
        raise EngineError(
            f"spark.master {master}: no Spark master answers ({'; '.join(reasons)}); start the "
            "cluster, or set spark.master: local[*] to run on this machine"
        )


_SESSIONS: dict[str, SparkSession] = {}


def spark_session(config: SparkConfig, driver_log: Path) -> SparkSession:
    """The run's SparkSession, started at the first stage that needs it and stopped when the
    process ends: the stages of one run share its executors. The driver JVM's own output (its
    warnings, native library notes) goes to `driver_log`, apart from the run's lines."""
    key = config.model_dump_json()
    if key in _SESSIONS:
        return _SESSIONS[key]
    check_installed()
    check_master(config.master)
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    python = sys.executable
    # Executors start their Python workers from PYSPARK_PYTHON (the config key alone is not read
    # in every deploy mode): the driver's own interpreter unless the user chose another.
    os.environ.setdefault("PYSPARK_PYTHON", python)
    settings = {
        # Executors run the same Python as the driver; results must not depend on a time zone.
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(config.partitions),
        "spark.default.parallelism": str(config.partitions),
        # A value that does not parse is null (and reported per row), not a failed job.
        "spark.sql.ansi.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # The web UI would listen on every interface; turn it on with spark.conf if wanted.
        "spark.ui.enabled": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_SETTINGS}",
        # Part files are renamed by the project; Spark's marker files would differ run to run.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.enable.summary-metadata": "false",
    }
    if on_this_machine(config.master):
        # Nothing outside this machine needs to reach the driver: listen on the loopback only.
        settings["spark.driver.host"] = settings["spark.driver.bindAddress"] = "127.0.0.1"
    settings.update(config.settings())
    conf = SparkConf().setMaster(config.master).setAppName("segmentation")
    conf.setAll(list(settings.items()))
    try:
        if SparkContext._gateway is None:  # the first session of this process starts the JVM
            driver_log.parent.mkdir(parents=True, exist_ok=True)
            with driver_log.open("ab") as log:
                gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": log})
            SparkContext(conf=conf, gateway=gateway)
        session = SparkSession.builder.config(conf=conf).getOrCreate()
    except Exception as exc:  # the JVM's failures reach Python as many exception types
        raise EngineError(
            f"spark.master {config.master}: Spark did not start ({first_line(exc)}); "
            f"check spark.master and spark.conf (the driver's log: {driver_log})"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    _SESSIONS[key] = session
    atexit.register(session.stop)
    return session


def first_line(exc: BaseException) -> str:
    """The useful line of a JVM or Python-worker error, without Py4J's framing: the last
    `SomethingError: ...` line when there is one (the cause), else the first line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[\w.$]+(Error|Exception): \S", line)]
    if causes:
        return causes[-1][:300]
    for line in lines:
        if not line.startswith(("An error occurred while calling", "Traceback")):
            return line[:300]
    return type(exc).__name__
