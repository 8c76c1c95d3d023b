# syntax=docker/dockerfile:1
# One image for every role: `tmd operator`, `tmd shim`, `tmd worker` (the entrypoint is `tmd`).
#   docker build -t ghcr.io/tmd-dev/tmd:0.1.0 .
#   docker run --rm ghcr.io/tmd-dev/tmd:0.1.0 worker --help

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tmd
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY tmd ./tmd
# torch: constraints.txt pins the version (torch==2.13.0). PyPI's Linux wheel of that version
# depends on the CUDA libraries (several GB) that CPU-only ML nodes never use; PyTorch's CPU index
# carries the same version as 2.13.0+cpu. `==2.13.0` matches 2.13.0+cpu (PEP 440 local versions),
# and pip prefers it over the PyPI wheel since a local version sorts higher; every other
# dependency still comes from PyPI, which is why the CPU index is an *extra* index.
RUN /opt/tmd/bin/pip install --constraint constraints.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu . \
    && /opt/tmd/bin/python -c "import torch; assert not torch.version.cuda, torch.version.cuda"

FROM python:3.11-slim
COPY --from=build /opt/tmd /opt/tmd
# TMD_WORK_DIR: where workers put fetched model artifacts (tmd/worker/fetch.py); /tmp is an
# emptyDir in the manifests, since the root filesystem is read-only.
ENV PATH=/opt/tmd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMD_WORK_DIR=/tmp
# A numeric non-root user, so that Kubernetes can verify runAsNonRoot (manifests use 10001).
RUN groupadd --system --gid 10001 tmd && useradd --system --uid 10001 --gid tmd --no-create-home tmd
USER 10001:10001
# 8080: worker (tmd/operator/config.py worker_port); 9200: shim.
EXPOSE 8080 9200
ENTRYPOINT ["tmd"]
CMD ["--help"]
