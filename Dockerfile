# gluebox image: fine-tune Hugging Face encoders on GLUE, CPU only, offline at run time.
#
#   docker build -t gluebox .                                   # bakes distilbert-base-uncased + GLUE MRPC from the hub
#   docker build --build-arg MODEL=bert-base-uncased --build-arg TASK=rte -t gluebox:rte .
#   docker run --rm --init --cpus 2 --memory 8g -v "$PWD/runs:/runs" --env-file .env \
#       gluebox train --task_name mrpc --model_name_or_path distilbert-base-uncased
#
# Another hub or a proxy for the pre-cache only: --build-arg HF_ENDPOINT=... / HUB_PROXY=... (stage 5;
# neither reaches the final image).
# Offline bake (no hub at build time): put a model directory and/or GLUE task directory
# under docker/bake/ and pass --build-arg MODEL=/opt/bake/<model> --build-arg DATA_DIR=/opt/bake/<TASK>.
# See docs/docker.md. Only the legacy builder's syntax is used (no BuildKit features).

# ---------------------------------------------------------------------------------------
# Stage 1: the pinned dependencies in a virtualenv (torch CPU from TORCH_INDEX_URL, the rest
# from requirements/lock.txt). Changes only when requirements/ changes.
# ---------------------------------------------------------------------------------------
FROM python:3.11-slim AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/torch.txt requirements/lock.txt /tmp/requirements/
# --no-deps everywhere: the lock is the complete set; `pip check` proves it is consistent.
RUN pip install --no-deps --index-url "$TORCH_INDEX_URL" -r /tmp/requirements/torch.txt \
 && pip install --no-deps -r /tmp/requirements/lock.txt \
 && pip check \
 && rm -rf /tmp/requirements

# ---------------------------------------------------------------------------------------
# Stage 2: gluebox itself, installed under a staging root so the final stage copies only
# gluebox's own files (package, dist-info, console script) on top of the deps layer.
# ---------------------------------------------------------------------------------------
FROM deps AS app
COPY pyproject.toml README.m[d] /src/
COPY src /src/src
RUN pip install --no-deps --root /app-root /src

# ---------------------------------------------------------------------------------------
# Stage 3: the venv as the runtime needs it. Dropped: what only building or testing uses
# (C++ headers, torch's C++ test binaries and protoc, packages' own test suites, pip).
# Intermediate layers of this stage never reach the final image: only /opt/venv is copied.
# ---------------------------------------------------------------------------------------
FROM deps AS venv
RUN set -e; sp=/opt/venv/lib/python3.11/site-packages; \
    rm -rf "$sp/torch/include" "$sp/torch/test" "$sp/pyarrow/include" "$sp/pyarrow/tests" \
           "$sp/pandas/tests" "$sp/matplotlib/tests"; \
    find "$sp/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +; \
    find "$sp/numpy" "$sp/sympy" "$sp/networkx" -type d -name tests -prune -exec rm -rf {} +; \
    python -m pip uninstall --yes --quiet pip; \
    python -c "import torch, transformers, datasets, lightning, torchmetrics, wandb, matplotlib, pandas, pyarrow, sympy, networkx"

# ---------------------------------------------------------------------------------------
# Stage 4: the runtime image's files. Layers: user -> deps -> bake inputs -> code.
# ---------------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime
ARG UID=1000
ARG GID=1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/opt/hf-cache \
    GLUEBOX_RUNS_DIR=/runs \
    MPLCONFIGDIR=/tmp/matplotlib

# libatomic.so.1: mimalloc (gluebox's default allocator, from the cmeel-mimalloc wheel) links to it and
# python:3.11-slim lacks it; without it gluebox keeps glibc's malloc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libatomic1 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid "$GID" gluebox \
 && useradd --uid "$UID" --gid "$GID" --create-home --shell /usr/sbin/nologin gluebox \
 && mkdir -p /runs /opt/hf-cache \
 && chown gluebox:gluebox /runs /opt/hf-cache

COPY --from=venv /opt/venv /opt/venv

# Optional offline bake inputs (a README only in the repo; see docs/docker.md).
COPY docker/bake/ /opt/bake/

COPY --from=app /app-root/ /

# What to bake in. MODEL is a hub id or a path inside the image (e.g. /opt/bake/model);
# DATA_DIR, when set, is a local GLUE task directory to validate instead of downloading.
ARG MODEL=distilbert-base-uncased
ARG TASK=mrpc
ARG DATA_DIR=
ENV GLUEBOX_MODEL=$MODEL \
    GLUEBOX_TASK=$TASK \
    GLUEBOX_DATA_DIR=$DATA_DIR

USER gluebox
WORKDIR /runs

# ---------------------------------------------------------------------------------------
# Stage 5: the pre-cache of model + tokenizer + dataset, in a stage of its own so that its
# download settings never reach the final image (which copies only /opt/hf-cache from it:
# its build args are in no layer, no `docker history` line and no ENV of the image).
#   HF_ENDPOINT  another hub than https://huggingface.co (a mirror; the tests' Hub stand-in)
#   HUB_PROXY    an HTTP(S) proxy for these downloads only (pip does not use it)
# Both unset by default: a plain build downloads from the Hugging Face Hub.
# ---------------------------------------------------------------------------------------
FROM runtime AS cache
ARG HF_ENDPOINT
ARG HUB_PROXY
# Runs as the runtime user (the datasets cache needs write access for its lock files).
# Group/other write so `docker run --user <uid>` works too.
RUN set -e; \
    if [ -z "$HF_ENDPOINT" ]; then unset HF_ENDPOINT; fi; \
    if [ -n "$HUB_PROXY" ]; then export HTTP_PROXY="$HUB_PROXY" HTTPS_PROXY="$HUB_PROXY"; fi; \
    if [ -n "$GLUEBOX_DATA_DIR" ]; then \
      gluebox cache --model_name_or_path "$GLUEBOX_MODEL" --task_name "$GLUEBOX_TASK" --data_dir "$GLUEBOX_DATA_DIR"; \
    else \
      gluebox cache --model_name_or_path "$GLUEBOX_MODEL" --task_name "$GLUEBOX_TASK"; \
    fi; \
    chmod -R a+rwX "$HF_HOME"

# ---------------------------------------------------------------------------------------
# Stage 6: the runtime image = stage 4 + the pre-cached model and data.
# ---------------------------------------------------------------------------------------
FROM runtime
COPY --from=cache --chown=gluebox:gluebox /opt/hf-cache/ /opt/hf-cache/

# From here on the hub is never contacted: everything comes from the image's caches.
ENV HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

VOLUME ["/runs"]
ENTRYPOINT ["gluebox"]
CMD ["--help"]
