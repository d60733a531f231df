#!/usr/bin/env bash
# Build a local stand-in for the Dockerfile's base image (python:3.11-slim-bookworm) on a
# machine that cannot reach a container registry, and tag it segmentation-base:standin:
#
#   docker/standin-base.sh [--cache-dir DIR] [--rebuild]
#   docker build --build-arg BASE_IMAGE=segmentation-base:standin -t segmentation:test .
#
# The stand-in is a Debian bookworm minbase root file system with Debian's python3 (3.11),
# python3-venv and ca-certificates -- no more than the real base has, so the Dockerfile must
# still install everything else itself. The machine's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt, e.g. of an HTTPS proxy in front of PyPI) are
# trusted in this stand-in only, never in the project's Dockerfile.
#
# Needs root, debootstrap and a running docker daemon (DOCKER_HOST is honoured); docker/test.sh
# provides all three. The Debian mirror is read from this machine's apt sources; set
# DEBIAN_MIRROR (and DEBIAN_SECURITY_MIRROR) to override.
#
# Cache: the image is saved to DIR/standin-base.tar (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/segmentation-docker) and loaded from there next time instead
# of being rebuilt. The image carries a key (hash of this script, the mirrors and the extra CA
# certificates); a cached image with another key is rebuilt. --rebuild ignores the cache.
set -euo pipefail

IMAGE=${IMAGE:-segmentation-base:standin}
SUITE=bookworm
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/segmentation-docker
REBUILD=false
EXTRA_CA_DIR=/usr/local/share/ca-certificates
KEY_LABEL=org.segmentation.standin-key

die() {
    echo "standin-base: error: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --cache-dir) CACHE_DIR=${2:?--cache-dir needs a folder}; shift 2 ;;
        --cache-dir=*) CACHE_DIR=${1#*=}; shift ;;
        --rebuild) REBUILD=true; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
TARBALL=$CACHE_DIR/standin-base.tar

# --- The Debian mirror, from this machine's apt sources --------------------------------------
# Prints "URI SUITE" for every deb entry, deb822 (*.sources) and one-line (*.list) formats.
apt_entries() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
            function flush(   i, j) {
                if (types ~ /(^| )deb( |$)/)
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print uri[i], suite[j]
                types = ""; nu = 0; ns = 0
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/  { $1 = ""; types = $0 }
            /^URIs:/   { for (i = 2; i <= NF; i++) uri[++nu] = $i }
            /^Suites:/ { for (i = 2; i <= NF; i++) suite[++ns] = $i }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
}

first_uri_for_suite() {
    apt_entries | awk -v s="$1" '$2 == s { sub(/\/+$/, "", $1); print $1; exit }'
}

# A Debian host on another release: its mirrors serve bookworm, too.
# shellcheck source=/dev/null
host_codename=$( (. /etc/os-release && [[ ${ID:-} == debian ]] && echo "${VERSION_CODENAME:-}") 2> /dev/null || true)
MIRROR=${DEBIAN_MIRROR:-$(first_uri_for_suite "$SUITE")}
if [[ -z $MIRROR && -n $host_codename ]]; then
    MIRROR=$(first_uri_for_suite "$host_codename")
fi
[[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt/sources*; set DEBIAN_MIRROR=<URI of a Debian archive>"
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(first_uri_for_suite "$SUITE-security")}
if [[ -z $SECURITY_MIRROR && -n $host_codename ]]; then
    SECURITY_MIRROR=$(first_uri_for_suite "$host_codename-security")
fi
[[ -n $SECURITY_MIRROR ]] || die "no Debian security mirror found in /etc/apt/sources*; set DEBIAN_SECURITY_MIRROR"

# --- Cache key --------------------------------------------------------------------------------
extra_cas=()
if [[ -d $EXTRA_CA_DIR ]]; then
    while IFS= read -r -d '' f; do extra_cas+=("$f"); done \
        < <(find "$EXTRA_CA_DIR" -maxdepth 1 -type f -name '*.crt' -print0 | sort -z)
fi
KEY=$(
    {
        sha256sum < "${BASH_SOURCE[0]}"
        echo "$SUITE $MIRROR $SECURITY_MIRROR"
        ((${#extra_cas[@]} == 0)) || cat "${extra_cas[@]}"
    } | sha256sum | cut -c1-16
)

image_key() {
    docker image inspect --format "{{ index .Config.Labels \"$KEY_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

docker version --format '{{.Server.Version}}' > /dev/null 2>&1 \
    || die "no docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-default}); docker/test.sh starts one"

save_tarball() {
    mkdir -p "$CACHE_DIR"
    docker save -o "$TARBALL.tmp.$$" "$IMAGE"
    mv -f "$TARBALL.tmp.$$" "$TARBALL"
    echo "standin-base: saved $IMAGE to $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

if ! $REBUILD; then
    if [[ $(image_key) == "$KEY" ]]; then
        echo "standin-base: $IMAGE is up to date (key $KEY)"
        [[ -f $TARBALL ]] || save_tarball
        exit 0
    fi
    if [[ -f $TARBALL ]]; then
        echo "standin-base: loading $TARBALL"
        docker load -q -i "$TARBALL" > /dev/null || echo "standin-base: cannot load $TARBALL; rebuilding" >&2
        if [[ $(image_key) == "$KEY" ]]; then
            echo "standin-base: $IMAGE loaded from cache (key $KEY)"
            exit 0
        fi
        echo "standin-base: cached image is stale (key $(image_key), want $KEY); rebuilding"
    fi
fi

# --- Build ------------------------------------------------------------------------------------
((EUID == 0)) || die "building the stand-in needs root (debootstrap, chroot)"
command -v debootstrap > /dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/standin-base.XXXXXX")
ROOTFS=$WORK/rootfs

# Unmount whatever is still mounted below $WORK (deepest first), then delete it without ever
# crossing into a mount point.
cleanup() {
    local target
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r \
        | while IFS= read -r target; do
            umount "$target" 2> /dev/null || umount -l "$target" || true
        done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
echo "standin-base: debootstrap $SUITE from $MIRROR (security: $SECURITY_MIRROR)"
if ! debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed"
fi

# Same suites as the official image: bookworm, bookworm-updates and bookworm-security.
rm -f "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# The machine's extra CAs: copied before ca-certificates is installed, so its postinst
# already adds them to /etc/ssl/certs; update-ca-certificates below makes sure.
if ((${#extra_cas[@]})); then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    cp "${extra_cas[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
fi

cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"
in_root() {
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}
in_root sh -euc '
    apt-get update -q
    apt-get upgrade -q -y
    apt-get install -q -y --no-install-recommends python3 python3-venv ca-certificates
    update-ca-certificates
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/*.log \
        /var/cache/debconf/*-old /tmp/* /root/.cache
' > "$WORK/chroot.log" 2>&1 || {
    tail -n 30 "$WORK/chroot.log" >&2
    die "installing python3 in the stand-in failed"
}
umount "$ROOTFS/proc"
# Docker supplies resolv.conf, hosts and hostname at run time: leave nothing of this machine.
: > "$ROOTFS/etc/resolv.conf"
: > "$ROOTFS/etc/hostname"

python_version=$(chroot "$ROOTFS" /usr/bin/python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
tar --numeric-owner --xattrs -C "$ROOTFS" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$python_version" \
    --change "LABEL $KEY_LABEL=$KEY" \
    --change 'LABEL org.opencontainers.image.description="Local stand-in for python:3.11-slim-bookworm"' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" > /dev/null
echo "standin-base: built $IMAGE (python $python_version, key $KEY) in $((SECONDS - start)) s"
save_tarball
