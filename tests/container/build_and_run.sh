#!/usr/bin/env bash
# Build the bids-boldsr image (CPU torch) with podman on a local Debian bookworm base made by debootstrap,
# run its entrypoint as an unprivileged uid on a read-only root filesystem on the real ds-xa30 dataset
# (participant, then group), and check the outputs. Needs root (podman, chroot, mounts).
#
#   bash tests/container/build_and_run.sh            # build + run + checks
#   bash tests/container/build_and_run.sh --cold     # the same from nothing: base image and layer cache removed first
#   bash tests/container/build_and_run.sh --cuda-dry-run   # also resolve the CUDA variant's torch (prints its wheels)
#   bash tests/container/build_and_run.sh --keep     # keep the output/work folders (printed at the end)
#   bash tests/container/build_and_run.sh --no-prune # keep podman's dangling intermediate images (build cache)
#
# Environment: BOLDSR_TEST_DATA (default ../shared/data/ds-xa30 beside the repository, else
# /work/shared/data/ds-xa30), BOLDSR_IMAGE (default localhost/bids-boldsr:test), BOLDSR_UID (12345),
# BOLDSR_CACHE (debootstrap scratch, /var/tmp/bids-boldsr-container).
#
# Why not `podman run`: this machine cannot set rlimits for containers, so the image's rootfs is mounted
# (podman image mount), made read-only, given /data (ro), /out and /work (rw), and the image's entrypoint
# is started with chroot --userspec and exactly the image's ENV, in a fresh network namespace (offline).
set -euo pipefail

T0=$(date +%s)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE=localhost/debian-bookworm-python:latest
IMAGE="${BOLDSR_IMAGE:-localhost/bids-boldsr:test}"
RUN_UID="${BOLDSR_UID:-12345}"
CACHE="${BOLDSR_CACHE:-/var/tmp/bids-boldsr-container}"
DATA="${BOLDSR_TEST_DATA:-}"
if [ -z "$DATA" ]; then
    DATA="$(cd "$repo/.." && pwd)/shared/data/ds-xa30"
    [ -d "$DATA" ] || DATA=/work/shared/data/ds-xa30
fi
COLD=0 KEEP=0 CUDA_DRY=0 PRUNE=1
for arg in "$@"; do
    case "$arg" in
        --cold) COLD=1 ;;
        --keep) KEEP=1 ;;
        --cuda-dry-run) CUDA_DRY=1 ;;
        --no-prune) PRUNE=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option: $arg" >&2; exit 2 ;;
    esac
done

say() { printf '\n=== [%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
declare -A TIMES
timed() {  # timed NAME command...: run, record seconds
    local name=$1 t; shift
    t=$(date +%s)
    "$@"
    TIMES[$name]=$(( $(date +%s) - t ))
}

[ "$(id -u)" = 0 ] || fail "run as root (podman storage, chroot, bind mounts)"
[ -d "$DATA" ] || fail "dataset not found: $DATA (set BOLDSR_TEST_DATA)"

# ------------------------------------------------------------------------------------------- cleanup
img_mounted=0 scratch=""
cleanup() {
    local rc=$?
    set +e
    if [ "$img_mounted" = 1 ]; then podman image unmount "$IMAGE" >/dev/null 2>&1; fi
    if [ -n "$scratch" ] && [ -d "$scratch" ]; then
        # the bind mounts live in a private mount namespace (gone with it); unmount leftovers anyway
        for m in $(awk -v s="$scratch" '$5 ~ "^"s {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
        if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then echo "outputs kept in $scratch"; else rm -rf "$scratch"; fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------ (1) tools
say "tools"
need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
podman --version

if [ "$COLD" = 1 ]; then
    say "cold start: removing $IMAGE, its torch stage, $BASE and dangling images (build cache)"
    podman rmi -f "$IMAGE" localhost/bids-boldsr:torch-cpu "$BASE" >/dev/null 2>&1 || true
    podman image prune -f >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------------- (2) Debian bookworm base
make_base() {
    local mirror rootfs
    mirror=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
    rm -rf "$CACHE/rootfs"; mkdir -p "$CACHE"
    rootfs="$CACHE/rootfs"
    echo "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates,libstdc++6,libgomp1 \
        bookworm "$rootfs" "$mirror" > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; fail "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
}
say "base image $BASE"
if podman image exists "$BASE"; then
    echo "present (cached)"; TIMES[base]=0
else
    timed base make_base
fi

# --------------------------------------------------------------------- (3) pip settings, build
# This machine's pip settings (pip config list: files and PIP_* variables; the variables win), passed to
# the build as build arguments, with every local folder/file they name mounted read-only into RUN steps.
pipcfg() {  # pipcfg KEY -> value ('' when unset)
    python3 -m pip config list 2>/dev/null | python3 -c '
import sys
key, found = sys.argv[1], {}
for line in sys.stdin:
    name, _, value = line.rstrip("\n").partition("=")
    origin, _, k = name.rpartition(".")
    if k == key:
        found.setdefault("env" if origin == ":env:" else "file", value.strip("\x27\""))
print(found.get("env", found.get("file", "")))' "$1"
}
declare -A PIPSET
vols=()
add_local() {  # mount a local path (plain or file:// URL) named by a pip setting
    local p=${1#file://}
    p=${p%/}
    case "$p" in */simple) p=${p%/simple} ;; esac  # a local index links to ../../files/: mount its parent
    case "$p" in /*) [ -e "$p" ] && vols+=(-v "$p:$p:ro") ;; esac
    return 0
}
# cert: this machine's CA bundle (TLS to the index may pass through a CA that only this machine trusts)
for key in index-url extra-index-url find-links constraint trusted-host cert; do
    val=$(pipcfg "$key")
    [ -n "$val" ] || continue
    var=PIP_$(echo "$key" | tr a-z- A-Z_)
    PIPSET[$var]=$val
    echo "pip setting: $var=$val"
    for item in $val; do add_local "$item"; done
done
pip_args() {  # pip_args [VAR-TO-LEAVE-OUT...] -> --build-arg VAR=VALUE pairs
    local var
    for var in "${!PIPSET[@]}"; do
        case " $* " in *" $var "*) continue ;; esac
        printf '%s\0%s\0' --build-arg "$var=${PIPSET[$var]}"
    done
}
mapfile -d '' build_args < <(pip_args)
VERSION=$(python3 -c 'import re, sys; print(re.search(r"(?m)^version\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read()).group(1))' "$repo/pyproject.toml")
# a +cpu wheel among the local find-links: pin it (the range would also admit PyPI's newer CUDA builds)
TORCH_SPEC="torch>=2.2,<2.14" TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
for d in $(pipcfg find-links); do
    w=$(ls "${d#file://}"/torch-2.*+cpu-cp311-*.whl 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$w" ]; then
        v=$(basename "$w" | cut -d- -f2)
        TORCH_SPEC="torch==$v" TORCH_CPU_INDEX=""
        echo "local CPU torch wheel: $w -> TORCH_SPEC=$TORCH_SPEC (from find-links, no CPU index)"
    fi
done

say "podman build $IMAGE (TORCH_VARIANT=cpu)"
TORCH_TAG=localhost/bids-boldsr:torch-cpu
build() {
    local common=(--isolation chroot --network host -f "$repo/Dockerfile"
        --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_VARIANT=cpu
        --build-arg TORCH_SPEC="$TORCH_SPEC" --build-arg TORCH_CPU_INDEX="$TORCH_CPU_INDEX"
        "${build_args[@]}" "${vols[@]}")
    # the torch stage first, tagged: it stays cached when the rest is pruned below
    podman build "${common[@]}" --target torch -t "$TORCH_TAG" "$repo" > "$CACHE/build.log" 2>&1 \
        && podman build "${common[@]}" --build-arg VERSION="$VERSION" -t "$IMAGE" "$repo" >> "$CACHE/build.log" 2>&1 \
        || { tail -40 "$CACHE/build.log"; fail "podman build failed (log: $CACHE/build.log)"; }
    grep -E '^(\[[0-9]/[0-9]\] STEP [0-9]+/[0-9]+: (FROM|RUN|COPY)|torch |--> Using cache|No broken)' "$CACHE/build.log" \
        | cut -c1-110 | sed 's/^/  /' | tail -30
    # intermediate images of earlier builds (the app stage is ~3 GB each time the code changes)
    [ "$PRUNE" = 0 ] || podman image prune -f >/dev/null
}
mkdir -p "$CACHE"
timed build build

if [ "$CUDA_DRY" = 1 ]; then
    say "CUDA variant: dry resolve of the torch stage (--target torch, PIP_DRY_RUN=1; nothing downloaded into an image)"
    # without the local find-links: they hold a +cpu wheel, which the range would take
    mapfile -d '' cuda_args < <(pip_args PIP_FIND_LINKS)
    cuda_dry() {
        podman build --isolation chroot --network host -f "$repo/Dockerfile" --target torch \
            --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_VARIANT=cuda --build-arg PIP_DRY_RUN=1 \
            --no-cache "${cuda_args[@]}" "${vols[@]}" -t localhost/bids-boldsr:cuda-dry-run "$repo" \
            > "$CACHE/cuda-dry.log" 2>&1 || { tail -30 "$CACHE/cuda-dry.log"; fail "CUDA dry resolve failed"; }
        grep -E '^(pip install|would install)' "$CACHE/cuda-dry.log" | sed 's/^/  /'
        grep -q '^would install torch 2\.' "$CACHE/cuda-dry.log" || fail "CUDA dry resolve picked no torch 2.x"
        podman rmi -f localhost/bids-boldsr:cuda-dry-run >/dev/null 2>&1 || true
    }
    timed cuda_dry cuda_dry
fi
# ------------------------------------------------------------------ image facts (ENV, entrypoint, ...)
say "image facts"
fmt() { podman image inspect --format "$1" "$IMAGE"; }
mapfile -t IMG_ENV < <(fmt '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
ENTRY=$(fmt '{{range .Config.Entrypoint}}{{.}} {{end}}')
IMG_USER=$(fmt '{{.Config.User}}')
IMG_WORKDIR=$(fmt '{{.Config.WorkingDir}}')
SIZE=$(fmt '{{.Size}}')
printf '  %s\n' "${IMG_ENV[@]}"
echo "  entrypoint: $ENTRY; user: $IMG_USER; workdir: $IMG_WORKDIR"
for l in version source licenses title description; do
    echo "  label $l: $(fmt "{{index .Labels \"org.opencontainers.image.$l\"}}")"
done
[ "$(fmt '{{index .Labels "org.opencontainers.image.version"}}')" = "$VERSION" ] || fail "version label != $VERSION"
[ "$ENTRY" = "bids-boldsr " ] || fail "entrypoint is '$ENTRY', expected bids-boldsr"
case "$IMG_USER" in ""|0|0:*|root|root:*) fail "the image runs as root" ;; esac

# --------------------------------------------------------------- (4) run on a read-only rootfs
scratch=$(mktemp -d /var/tmp/bids-boldsr-ctest.XXXXXX)
mkdir -p "$scratch/out" "$scratch/work" "$scratch/ro"
chown "$RUN_UID:$RUN_UID" "$scratch/out" "$scratch/work"
rootfs=$(podman image mount "$IMAGE"); img_mounted=1
for d in data out work proc dev; do [ -d "$rootfs/$d" ] || fail "mount point /$d missing in the image"; done

# One chroot run in a private mount namespace and no network: the rootfs is a read-only bind; /data is
# read-only; only /out and /work are writable (plus /dev/shm, as in docker --read-only).
in_image() {  # in_image LOGNAME COMMAND... -> exit code of COMMAND run in the image, with the image's ENV
    local log=$1; shift
    unshare --mount --net --propagation private /bin/bash -euo pipefail -c '
        r=$1 s=$2 data=$3 uid=$4 wd=$5; shift 5
        mount --bind "$r" "$s/ro"; mount -o remount,bind,ro "$s/ro"
        mount --bind "$data" "$s/ro/data"; mount -o remount,bind,ro "$s/ro/data"
        mount --bind "$s/out" "$s/ro/out"; mount --bind "$s/work" "$s/ro/work"
        mount -t proc proc "$s/ro/proc"; mount --rbind /dev "$s/ro/dev"
        ip link set lo up 2>/dev/null || true
        # no writable place besides /out, /work and /dev/shm:
        if chroot --userspec="$uid:$uid" "$s/ro" /bin/sh -c "touch /tmp/x || touch \$HOME/x || touch /x" 2>/dev/null; then
            echo "the root filesystem is writable" >&2; exit 99; fi
        exec chroot --userspec="$uid:$uid" "$s/ro" /usr/bin/env -i -C "$wd" "$@"
    ' in_image "$rootfs" "$scratch" "$DATA" "$RUN_UID" "$IMG_WORKDIR" \
        "${IMG_ENV[@]}" "$@" > "$scratch/$log.log" 2>&1
}
run_level() {  # run_level LEVEL ARGS...
    local level=$1 rc=0; shift
    in_image "$level" $ENTRY /data /out "$level" "$@" || rc=$?
    tail -15 "$scratch/$level.log" | sed 's/^/  | /'
    echo "  exit code ($level): $rc"
    RC[$level]=$rc
    [ "$rc" = 0 ] || fail "bids-boldsr $level exited $rc (log: $scratch/$level.log)"
}
declare -A RC
say "--version and --help as uid $RUN_UID"
in_image version $ENTRY --version || { cat "$scratch/version.log"; fail "bids-boldsr --version failed"; }
cat "$scratch/version.log"
grep -q "bids-boldsr $VERSION" "$scratch/version.log" || fail "--version does not print $VERSION"

say "participant: bids-boldsr /data /out participant -w /work --sloppy --sr-method spline --nprocs 2 (uid $RUN_UID, read-only rootfs, offline)"
timed participant run_level participant -w /work --sloppy --sr-method spline --nprocs 2
say "group: bids-boldsr /data /out group -w /work"
timed group run_level group -w /work

# ---------------------------------------------------------------------------- (5) output checks
say "output checks"
find "$scratch/out" -maxdepth 4 -type f | sed "s|$scratch/out/||" | sort | head -40 | sed 's/^/  /'
img_python() {  # the image's python, same read-only setup, outputs mounted at /out
    in_image check python3 -c "$1" || { cat "$scratch/check.log"; return 1; }
    cat "$scratch/check.log"
}
img_python '
import glob, json, sys
import nibabel as nib
bad = []
def one(pattern):
    hits = sorted(glob.glob("/out/sub-01/**/" + pattern, recursive=True))
    if not hits:
        bad.append("missing: " + pattern)
    return hits
src = nib.load(glob.glob("/data/sub-01/func/*_bold.nii.gz")[0])
print("input bold", src.shape, [round(float(z), 3) for z in src.header.get_zooms()[:3]])
for path in [p for p in one("*desc-sr_bold.nii.gz") if "space-" not in p]:
    img = nib.load(path)
    print("sr", path[5:], img.shape, [round(float(z), 3) for z in img.header.get_zooms()[:3]])
    if img.ndim != 4 or img.shape[3] != src.shape[3]:
        bad.append(f"{path}: {img.shape} does not keep the {src.shape[3]} volumes")
    if not all(a > b for a, b in zip(img.shape[:3], src.shape[:3])):
        bad.append(f"{path}: {img.shape[:3]} is not finer than {src.shape[:3]}")
for path in one("*space-MNI152NLin2009aSym*_bold.nii.gz"):
    img = nib.load(path)
    print("mni", path[5:], img.shape, [round(float(z), 3) for z in img.header.get_zooms()[:3]])
    if img.ndim != 4 or img.shape[3] != src.shape[3]:
        bad.append(f"{path}: {img.shape} does not keep the {src.shape[3]} volumes")
d = json.load(open("/out/dataset_description.json"))
gen = d.get("GeneratedBy") or [{}]
print("GeneratedBy", json.dumps(gen))
if gen[0].get("Name") != "bids-boldsr":
    bad.append("GeneratedBy[0].Name is not bids-boldsr")
if gen[0].get("Container", {}).get("Type") != "docker":
    bad.append("GeneratedBy[0].Container.Type is not docker")
if d.get("DatasetType") != "derivative":
    bad.append("DatasetType is not derivative")
print("\n".join(bad) or "outputs OK")
sys.exit(1 if bad else 0)
' || fail "output checks failed"
# the image's embedded template was used in place: no seeded copy in the work dir
[ ! -e "$scratch/work/templateflow" ] || fail "the embedded template was seeded into the work dir"
# the rootfs was read-only; all that was written is the run uid's
bad_owner=$(find "$scratch/out" "$scratch/work" ! -uid "$RUN_UID" -print -quit)
[ -z "$bad_owner" ] || fail "file not owned by uid $RUN_UID: $bad_owner"

# ------------------------------------------------------------------------------- (6) summary
human() { numfmt --to=iec --suffix=B "$1" 2>/dev/null || echo "$1 B"; }
say "summary"
echo "image:            $IMAGE ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12))"
echo "image size:       $SIZE bytes ($(human "$SIZE"))"
echo "base image:       ${TIMES[base]} s (0 = cached)"
echo "build:            ${TIMES[build]} s"
[ -n "${TIMES[cuda_dry]:-}" ] && echo "CUDA dry resolve: ${TIMES[cuda_dry]} s"
echo "participant run:  ${TIMES[participant]} s, exit ${RC[participant]}"
echo "group run:        ${TIMES[group]} s, exit ${RC[group]}"
echo "total:            $(( $(date +%s) - T0 )) s"
echo "PASS"
