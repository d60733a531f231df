#!/usr/bin/env bash
# The Docker check (`make docker-test`, also run by .ci/run): build the image from the real
# Dockerfile on a stand-in base, run the pipeline in it the way users do -- no network, a
# non-root uid, the data read-only, empty output folders -- and compare the outputs with the
# host's run (artifacts/latest, so run `make all` first).
#
#   bash docker/test.sh                          # everything in a temp folder, removed after
#   DOCKER_TEST_CACHE=~/.cache/segmentation-docker bash docker/test.sh
#                                                # keep the daemon's data root (layer cache)
#                                                # and the stand-in base between runs
#
# Needs root: it installs docker.io and debootstrap with apt-get if they are missing and
# starts a private dockerd (own data root, exec root and socket under a temp folder; no
# bridge, no iptables rules) that is stopped again on exit, whatever happens. The image is
# built with the host network (the build downloads from PyPI and Debian); the pipeline runs
# with --network none.
#
# Passes when the container exits 0, writes reports/latest/index.html and
# artifacts/latest/assignments.csv, gets the same version id as the host, and every data
# output has the same SHA-256 as on the host. PNG and SVG charts depend on the installed
# fonts: whether they match too is reported, not required.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
IMAGE=${DOCKER_TEST_IMAGE:-segmentation:test}
BASE_IMAGE=segmentation-base:standin
CACHE=${DOCKER_TEST_CACHE:-}
# The container runs as this non-root uid:gid (this script itself runs as root).
RUN_AS=${DOCKER_TEST_USER:-1000:1000}

say() { echo "docker-test: $*"; }
DIED=false
die() {
    echo "docker-test: FAIL: $*" >&2
    DIED=true
    exit 1
}

# --- Preconditions ----------------------------------------------------------------------------
((EUID == 0)) || die "needs root (starts its own dockerd); run: sudo bash docker/test.sh"
compgen -G 'data/raw/*.csv' > /dev/null || die "no data in data/raw/ (run: make data)"
[[ -L artifacts/latest && -f artifacts/latest/manifest.json ]] \
    || die "no host run to compare with: artifacts/latest is missing (run: make all)"

missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v docker > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q > /dev/null
    # shellcheck disable=SC2046 # word splitting wanted: one package per word
    apt-get install -q -y --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) > /dev/null
fi

# --- A private docker daemon ------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/segmentation-docker-test.XXXXXX")
if [[ -n $CACHE ]]; then
    mkdir -p "$CACHE"
    CACHE=$(cd "$CACHE" && pwd)
    # One run at a time per cache: a data root serves one daemon only.
    exec 9> "$CACHE/.lock"
    flock -n 9 || {
        say "waiting for another run using $CACHE"
        flock 9
    }
    DATA_ROOT=$CACHE/dockerd-root
    STANDIN_ARGS=(--cache-dir "$CACHE")
else
    DATA_ROOT=$WORK/data-root
    STANDIN_ARGS=() # the stand-in base still uses its own default cache
fi
EXEC_ROOT=$WORK/x # short: containerd's sockets live below it
SOCKET=$WORK/docker.sock
DOCKERD_LOG=$WORK/dockerd.log
export DOCKER_HOST=unix://$SOCKET
DOCKERD_PID=

unmount_below() { # unmount everything mounted below $1, deepest first
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r \
        | while IFS= read -r target; do
            umount "$target" 2> /dev/null || umount -l "$target" 2> /dev/null || true
        done
}

stop_pid() { # stop_pid PID SECONDS: TERM, wait up to SECONDS, then KILL
    local pid=$1 i
    kill -0 "$pid" 2> /dev/null || return 0
    kill -TERM "$pid" 2> /dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2> /dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
}

cleanup() {
    local rc=$? containerd_pid=
    set +e
    if [[ -n $DOCKERD_PID ]]; then
        if ((rc != 0)) && [[ -s $DOCKERD_LOG ]]; then
            echo "--- last lines of the dockerd log:" >&2
            tail -n 10 "$DOCKERD_LOG" >&2
        fi
        containerd_pid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2> /dev/null)
        stop_pid "$DOCKERD_PID" 30
        wait "$DOCKERD_PID" 2> /dev/null
        # dockerd stops the containerd it started itself, unless it had to be killed.
        [[ -n $containerd_pid ]] && stop_pid "$containerd_pid" 10
    fi
    if ((rc != 0)) && ! $DIED; then echo "docker-test: FAIL: stopped with status $rc" >&2; fi
    unmount_below "$WORK"
    [[ -d $DATA_ROOT ]] && unmount_below "$DATA_ROOT"
    rm -rf --one-file-system "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
# --bridge none / --iptables=false: nothing is left in the host's network configuration; the
# build uses --network host, the pipeline --network none.
dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$WORK/dockerd.pid" \
    --host "$DOCKER_HOST" --bridge none --iptables=false --ip-masq=false --log-level warn \
    > "$DOCKERD_LOG" 2>&1 &
DOCKERD_PID=$!
for ((i = 0; ; i++)); do
    docker version --format '{{.Server.Version}}' > /dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2> /dev/null || die "dockerd exited while starting"
    ((i < 600)) || die "dockerd did not answer within 60 s"
    sleep 0.1
done
say "dockerd $(docker version --format '{{.Server.Version}}') up (pid $DOCKERD_PID, data root $DATA_ROOT)"

# --- The image --------------------------------------------------------------------------------
bash docker/standin-base.sh "${STANDIN_ARGS[@]}" || die "could not build or load the stand-in base image"

if ! docker buildx version > /dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
say "building $IMAGE from the Dockerfile (its output is shown if it fails)"
start=$SECONDS
# The build stage is tagged too, so that pruning what older builds left untagged keeps it as
# the layer cache for the next run (the classic builder caches in untagged images).
for target in build runtime; do
    tag=$IMAGE
    [[ $target == runtime ]] || tag=$IMAGE-$target
    docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" --target "$target" -t "$tag" . \
        >> "$WORK/build.log" 2>&1 || {
        tail -n 40 "$WORK/build.log" >&2
        die "docker build failed"
    }
done
build_s=$((SECONDS - start))
build_note=
if [[ ${DOCKER_BUILDKIT:-} == 0 ]]; then
    build_note=" ($(grep -c '^ ---> Using cache' "$WORK/build.log" || true) steps from the layer cache)"
fi
image_bytes=$(docker image inspect --format '{{.Size}}' "$IMAGE")
docker image prune -f > /dev/null # only this private daemon's images
# The data set must never be part of the image.
data_names=()
for f in data/raw/*.csv; do data_names+=(-o -iname "$(basename "$f")"); done
baked_in=$(docker run --rm --network none --user 0:0 --entrypoint find "$IMAGE" / -xdev \
    -type f \( "${data_names[@]:1}" \) -print)
[[ -z $baked_in ]] || die "the image contains the data set: $baked_in"

# --- The run ----------------------------------------------------------------------------------
OUT=$WORK/out
mkdir -p "$OUT/artifacts" "$OUT/reports"
chown "$RUN_AS" "$OUT/artifacts" "$OUT/reports"
say "running the pipeline as uid:gid $RUN_AS, --network none, data read-only"
start=$SECONDS
set +e
docker run --rm --network none --user "$RUN_AS" \
    -v "$ROOT/data/raw:/app/data/raw:ro" \
    -v "$OUT/artifacts:/app/artifacts" \
    -v "$OUT/reports:/app/reports" \
    "$IMAGE" 2>&1 | sed 's/^/    | /'
run_rc=${PIPESTATUS[0]}
set -e
run_s=$((SECONDS - start))

# --- The checks -------------------------------------------------------------------------------
((run_rc == 0)) || die "the container exited with status $run_rc"
[[ -s $OUT/reports/latest/index.html ]] || die "the container wrote no reports/latest/index.html"
[[ -s $OUT/artifacts/latest/assignments.csv ]] || die "the container wrote no artifacts/latest/assignments.csv"
host_version=$(readlink artifacts/latest)
container_version=$(readlink "$OUT/artifacts/latest")
[[ $container_version == "$host_version" ]] \
    || die "version id differs: container $container_version, host $host_version (did src/, config.yaml or the data change since the host's \`make all\`? rerun it)"

set +e
comparison=$(python3 - "artifacts/$host_version/manifest.json" "$OUT/artifacts/$container_version/manifest.json" << 'PY'
import json
import sys

host, container = (json.load(open(path))["outputs"] for path in sys.argv[1:3])
font_dependent = (".png", ".svg")
problems = [f"only on the host: {name}" for name in sorted(host.keys() - container.keys())]
problems += [f"only in the container: {name}" for name in sorted(container.keys() - host.keys())]
both = sorted(host.keys() & container.keys())
data = [name for name in both if not name.endswith(font_dependent)]
charts = [name for name in both if name.endswith(font_dependent)]
problems += [f"differs: {name}" for name in data if host[name] != container[name]]
if not data:
    problems.append("no data outputs to compare")
chart_diff = [name for name in charts if host[name] != container[name]]
same_data = sum(host[name] == container[name] for name in data)
print(f"data outputs {same_data} of {len(data)} identical to the host's")
print(f"PNG/SVG {len(charts) - len(chart_diff)} of {len(charts)} identical (font-dependent, not required)")
if chart_diff:
    print(f"  differ: {' '.join(name.removeprefix('charts/') for name in chart_diff)}")
for problem in problems:
    print(f"  {problem}")
sys.exit(1 if problems else 0)
PY
)
compare_rc=$?
set -e

mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
echo
say "summary"
echo "  build:      ${build_s} s$build_note, base $BASE_IMAGE"
echo "  image:      $IMAGE, $(mb "$image_bytes")"
echo "  run:        ${run_s} s (make all, --network none, uid:gid $RUN_AS)"
echo "  version:    $container_version (host: $host_version)"
while IFS= read -r line; do echo "  $line"; done <<< "$comparison"
((compare_rc == 0)) || die "the container's data outputs differ from the host's (see above)"
say "PASS"
