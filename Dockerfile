# bids-boldsr BIDS App image.
#   docker build -t bids-boldsr .
#   docker run --gpus all -v /data/ds:/data:ro -v /data/out:/out bids-boldsr /data /out participant
# GPU: the default torch wheel from PyPI for Linux x86_64 is a CUDA build; for a CPU-only image pass
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim

ARG TORCH_SPEC="torch>=2.2,<2.14"
ARG TORCH_INDEX=""
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    BIDS_BOLDSR_EMBEDDED_TEMPLATES=/opt/bids-boldsr-templates \
    BIDS_BOLDSR_CONTAINER=docker \
    HOME=/tmp

RUN if [ -n "$TORCH_INDEX" ]; then pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX"; \
    else pip install "$TORCH_SPEC"; fi

COPY pyproject.toml README.md /src/
COPY bids_boldsr /src/bids_boldsr
RUN pip install /src && rm -rf /src

# Templates inside the image: compute nodes are often offline and home folders read-only.
RUN python -c "from bids_boldsr.templates import seed_embedded; seed_embedded('/opt/seed')" \
    && mv /opt/seed/templateflow /opt/bids-boldsr-templates && rm -rf /opt/seed \
    && mkdir -p /opt/templateflow && chmod -R a+rX /opt/bids-boldsr-templates /opt/templateflow

WORKDIR /tmp
ENTRYPOINT ["bids-boldsr"]
CMD ["--help"]
