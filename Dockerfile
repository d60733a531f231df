# Container for the segmentation pipeline.
#
#   docker build -t segmentation .
#   docker run --rm --user "$(id -u):$(id -g)" \
#       -v "$PWD/data/raw:/app/data/raw:ro" \
#       -v "$PWD/artifacts:/app/artifacts" -v "$PWD/reports:/app/reports" \
#       segmentation                      # runs `make all VENV=/opt/venv`
#   docker run --rm ... segmentation make report     # any other Makefile pipeline target
#
# The data set is never part of the image: mount it at /app/data/raw (drop `:ro` to let the
# pipeline download a missing file into it). Outputs go to /app/artifacts and /app/reports.

# The base image is pinned by digest so every build starts from the same bytes.
# To move to a newer base deliberately (e.g. for security fixes):
#   docker pull python:3.11-slim-bookworm
#   docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim-bookworm
# then paste the printed name@sha256:... below, rebuild, run the tests and commit.
# Any base with python3 >= 3.11 (incl. the venv module) and apt works, also one whose
# python3 is Debian's own: everything is installed into a virtual environment.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# ---------------------------------------------------------------------------------------
# Build stage: create /opt/venv from the hash-locked requirements and install the project.
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# pip runs from a venv of its own and installs into /opt/venv (`pip --python`), so the venv
# the image ships holds no pip or setuptools: not needed at run time (~22 MB less, and no
# installer left for scanners to flag). Bytecode is compiled at install on purpose: the
# venv is read-only at run time, and without .pyc files every run spends ~3 s compiling.
RUN python3 -m venv /opt/pip \
    && python3 -m venv --without-pip /opt/venv

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir \
        --require-hashes --no-deps -r requirements/runtime.lock

# The project itself, as a regular (non-editable) install. README.md is the package readme.
COPY pyproject.toml README.md ./
COPY src/ src/
# `pip check` fails the build if the lock misses a dependency (possible with --no-deps).
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir \
        --no-deps --no-build-isolation . \
    && /opt/pip/bin/pip --python /opt/venv/bin/python check

# ---------------------------------------------------------------------------------------
# Runtime stage: the virtual environment, make and the few files `make all` reads.
FROM ${BASE_IMAGE} AS runtime

# make from the distribution. The version matches Debian bookworm (the default base);
# override with --build-arg MAKE_VERSION=... for a base on another release.
ARG MAKE_VERSION=4.3-4.1
RUN apt-get update \
    && apt-get install -y --no-install-recommends "make=${MAKE_VERSION}" \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root user. Users may also run with --user "$(id -u):$(id -g)", so HOME and
# the output directories are writable for any uid (sticky bit, like /tmp).
ARG APP_UID=10001
RUN groupadd --gid "${APP_UID}" app \
    && useradd --no-log-init --uid "${APP_UID}" --gid app --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /home/app /app/data/raw /app/artifacts /app/reports \
    && chmod 1777 /home/app /app/data /app/data/raw /app/artifacts /app/reports

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY Makefile pyproject.toml README.md config.yaml ./
COPY requirements/runtime.lock requirements/runtime.lock

# The Makefile rebuilds $(VENV) when requirements/runtime.lock or pyproject.toml is newer
# than $(VENV)/.runtime.stamp. The venv above is already installed from exactly these
# files, so give them the build time, stamp the venv after them, and fail the build if make
# would still want to reinstall anything.
RUN touch pyproject.toml requirements/runtime.lock \
    && touch /opt/venv/.runtime.stamp \
    && make --question VENV=/opt/venv /opt/venv/.runtime.stamp

ENV VENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    HOME=/home/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER ${APP_UID}:${APP_UID}

# No VOLUME: bind-mount /app/data/raw (read-only), /app/artifacts and /app/reports as shown
# at the top. A VOLUME would give every run that mounts less an anonymous volume per folder
# (left behind without --rm) and put artifacts/ and reports/ on different file systems.

CMD ["make", "all", "VENV=/opt/venv"]
