"""``python -m bot doctor``: what stands between this machine and a running bot, and how to fix it.

Each check is a small function returning :class:`Result` lines: ``ok``, ``warn`` (works, but
look) or ``FAIL`` (the bot will not run), each with what is wrong and how to fix it. The token
itself is never printed, not even in part. Checks that need the network (the token, the
intents, remote model servers) have a short timeout: an unreachable network is a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import importlib.metadata
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import EMBEDDED_MODEL, AccessConfig, Config, ModelConfig, load_config
from bot.errors import ConfigError, ModelLoadError, TokenError

NETWORK_TIMEOUT = 5.0
"""Seconds each network check may take before it is called unreachable."""
CPU_NF4_BITSANDBYTES = "0.48"
"""The bitsandbytes release this project requires and tests nf4 with on CPU."""
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{17,40}\.[A-Za-z0-9_-]{4,10}\.[A-Za-z0-9_-]{20,}$")
"""A bot token: the application id in base64, a timestamp, an HMAC, separated by dots."""
GATEWAY_MESSAGE_CONTENT = (1 << 18) | (1 << 19)
"""The application flags that mean the Message Content intent is enabled (verified apps; apps under 100 servers)."""
PORTAL = "https://discord.com/developers/applications"
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.gguf")
LOCK_FOLDER = Path(__file__).resolve().parents[1] / "requirements"
"""The lock of a checkout or of the Docker image (/app/requirements): the versions the suite last passed with."""
LOCK_FILES = ("torch.txt", "main.txt")
VERSIONED = ("torch", "transformers", "peft", "bitsandbytes", "discord.py")
"""The packages whose installed versions the report names (the ones the bot's behaviour hangs on)."""
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


class Status(enum.StrEnum):
    """How a check came out."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Result:
    """One line of the report: the check's name, what was found and, unless all is well, how to fix it."""

    status: Status
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        """``FAIL token: DISCORD_TOKEN is not set; fix: ...``."""
        return f"{self.status:<4} {self.check}: {self.message}" + (f"; fix: {self.fix}" if self.fix else "")


def ok(check: str, message: str) -> Result:
    return Result(Status.OK, check, message)


def warn(check: str, message: str, fix: str = "") -> Result:
    return Result(Status.WARN, check, message, fix)


def fail(check: str, message: str, fix: str) -> Result:
    return Result(Status.FAIL, check, message, fix)


# -- config and token --------------------------------------------------------------------------


def check_config(path: str | None) -> tuple[Result, Config | None]:
    """The config file loads and validates (no file: the built-in defaults)."""
    try:
        config = load_config(path)
    except ConfigError as error:
        first, *rest = str(error).splitlines()
        detail = "; ".join([first, *(line.strip() for line in rest)])
        if "not found" in first:
            return fail("config", detail, "check the --config path, or copy config.example.toml there"), None
        return fail("config", detail, f"edit the file (python -m bot check-config --config {path})"), None
    where = path or "no --config: built-in defaults"
    summary = f"{len(config.models)} model variant(s), default {config.default_model.name!r}"
    return ok("config", f"{where} ({summary})"), config


def check_access(access: AccessConfig) -> list[Result]:
    """A warning when ``allowed_roles`` or ``allowed_channels`` restrict servers while DMs stay open to everyone."""
    restricted = [key for key in ("allowed_roles", "allowed_channels") if getattr(access, key)]
    if not restricted or not access.allow_dms:
        return []
    keys = " and ".join(f"[access] {key}" for key in restricted)
    return [
        warn(
            "access",
            f"{keys} restrict{'s' if len(restricted) == 1 else ''} who is served in servers, but allow_dms = true "
            "serves anyone in DMs (a DM has no roles or channel to check)",
            "set [access] allow_dms = false, unless DMs are meant to be open to everyone",
        )
    ]


def client_id_from_token(token: str) -> int | None:
    """The application id a bot token starts with (base64 of its decimal digits), or None if it has none."""
    first = token.split(".", 1)[0]
    try:
        digits = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(digits) if digits.isdigit() else None


def check_token_shape(token: str | None) -> Result:
    """DISCORD_TOKEN is set and shaped like a bot token (never printed)."""
    from bot.frontends.discord.app.runner import TOKEN_VARIABLE

    reset = f"{PORTAL} > your application > Bot > Reset Token, then export {TOKEN_VARIABLE}=<the token>"
    if not token:
        return fail("token", f"{TOKEN_VARIABLE} is not set", reset)
    if not TOKEN_SHAPE.match(token) or client_id_from_token(token) is None:
        return fail(
            "token",
            f"{TOKEN_VARIABLE} does not look like a bot token (three parts separated by dots)",
            f"copy the bot token, not the client secret or the public key: {reset}",
        )
    return ok("token", f"{TOKEN_VARIABLE} is set and shaped like a bot token")


async def check_token_online(token: str) -> Result:
    """Discord accepts the token (GET /users/@me); an unreachable Discord is only a warning."""
    from bot.frontends.discord.app.runner import DiscordUnreachable, check_token

    try:
        await asyncio.wait_for(check_token(token), NETWORK_TIMEOUT)
    except (DiscordUnreachable, TimeoutError) as error:
        return warn("token", f"could not ask Discord whether the token is valid ({_short(error)})", "check the network")
    except TokenError as error:
        return fail("token", str(error), f"{PORTAL} > your application > Bot > Reset Token")
    return ok("token", "Discord accepts the token")


async def _application_flags(token: str) -> int:
    import discord

    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(token)
        info = await http.application_info()
        return int(info.get("flags") or 0)
    finally:
        await http.close()


async def check_intents(token: str | None, message_content: bool) -> Result:
    """The Message Content intent is enabled in the Developer Portal when ``[discord] message_content = true``."""
    if not message_content:
        return ok("intents", "message_content = false: only mentions, DMs and slash commands reach the bot")
    if not token:
        return warn("intents", "not checked: it needs a valid token")
    try:
        flags = await asyncio.wait_for(_application_flags(token), NETWORK_TIMEOUT)
    except Exception as error:  # any failure only means "not checked": say so and move on
        return warn("intents", f"could not check the Message Content intent ({_short(error)})", "check the network")
    if flags & GATEWAY_MESSAGE_CONTENT:
        return ok("intents", "the Message Content intent is enabled")
    return fail(
        "intents",
        "the Message Content intent is not enabled for this application",
        f"{PORTAL} > your application > Bot > Privileged Gateway Intents > Message Content, "
        "or set [discord] message_content = false",
    )


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


# -- installed versions ------------------------------------------------------------------------


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(folder: Path = LOCK_FOLDER) -> dict[str, str]:
    """The ``name==version`` pins of the lock in ``folder`` (names normalized); empty without one."""
    pins: dict[str, str] = {}
    for name in LOCK_FILES:
        file = folder / name
        if file.is_file():
            for line in file.read_text().splitlines():
                if match := PIN.match(line):
                    pins[_normalized(match[1])] = match[2]
    return pins


def installed_version(name: str) -> str | None:
    """The installed distribution's version, or ``None``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions(folder: Path = LOCK_FOLDER, installed: Callable[[str], str | None] = installed_version) -> Result:
    """The installed torch, transformers, peft, bitsandbytes and discord.py, against the lock's pins.

    torch's local label (``+cpu``, ``+cu128``) is its build, not its version: it is not compared.
    """
    locked = locked_versions(folder)
    found = {name: installed(name) for name in VERSIONED}
    listed = ", ".join(f"{name} {version or 'not installed'}" for name, version in found.items())
    if not locked:
        return ok("versions", f"{listed} (no lock here: {folder} not found)")
    differ = []
    for name, version in found.items():
        pin = locked.get(_normalized(name))
        if pin is not None and (version or "").split("+")[0] != pin:
            differ.append(f"{name} {version or 'not installed'} (locked: {pin})")
    if differ:
        return warn(
            "versions",
            f"{', '.join(differ)}: not the versions the tests passed with",
            "make install (a checkout), or pip install --no-deps --require-hashes -r requirements/main.txt "
            "after pip install -r requirements/torch.txt",
        )
    return ok("versions", f"{listed} (as locked)")


# -- models and GPU ----------------------------------------------------------------------------


def check_model_files(variant: ModelConfig) -> list[Result]:
    """A local variant's model folder (config and weights) or .gguf file, and its adapter folder."""
    name = f"model {variant.name}"
    if variant.backend == "openai":
        folder = variant.tokenizer or variant.path
        if not Path(folder).expanduser().is_dir():
            return [fail(name, f"tokenizer folder {folder} not found", "set tokenizer to a local copy of the model's")]
        return [ok(name, f"tokenizer folder {folder}")]
    if variant.path == EMBEDDED_MODEL:
        from bot.inference.loading import EMBEDDED_PACKAGE, embedded_gguf

        try:
            gguf = embedded_gguf()
        except ModelLoadError as error:
            return [fail(name, "the embedded model is not installed", str(error).split(": run ")[-1].strip("`"))]
        version = importlib.metadata.version(EMBEDDED_PACKAGE)
        return [ok(name, f"embedded model ({EMBEDDED_PACKAGE} {version}, {gguf.name})")]
    results = [_check_weights(name, Path(variant.path).expanduser())]
    if variant.adapter is not None:
        adapter = Path(variant.adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            what = "not found" if not adapter.exists() else "has no adapter_config.json"
            results.append(fail(name, f"adapter folder {adapter} {what}", "point adapter at a PEFT (LoRA) folder"))
        else:
            results.append(ok(name, f"adapter {adapter}"))
    return results


def _check_weights(name: str, path: Path) -> Result:
    fix = "download the weights there, or fix path in [[models]]"
    if path.is_file():
        if path.suffix != ".gguf":
            return fail(name, f"{path} is a file but not a .gguf file", "point path at a model folder or .gguf file")
        return ok(name, f"GGUF file {path}")
    if not path.is_dir():
        return fail(name, f"model folder {path} not found", fix)
    if not (path / "config.json").is_file():
        return fail(name, f"{path} has no config.json", fix)
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
        return fail(name, f"{path} has no weights (*.safetensors, pytorch_model*.bin or *.gguf)", fix)
    return ok(name, f"model folder {path}")


def check_gpu(config: Config) -> list[Result]:
    """CUDA (when configured or wanted) and, for load_4bit variants, a bitsandbytes that can quantize here."""
    import torch

    local = [v for v in config.models if v.backend == "local"]
    if not local:
        return [ok("gpu", "no local model variants: the model servers own the GPU")]
    cuda = torch.cuda.is_available()
    results: list[Result] = []
    if cuda:
        results.append(ok("gpu", f"CUDA: {torch.cuda.get_device_name(0)} (torch {torch.__version__})"))
    elif config.inference.device == "cuda":
        results.append(
            fail("gpu", "[inference] device = cuda but torch sees no CUDA GPU", "install the CUDA build of torch")
        )
    else:
        small = all(v.path == EMBEDDED_MODEL for v in local)
        message = f"no CUDA GPU (torch {torch.__version__}): the models run on the CPU"
        results.append(ok("gpu", message + " (fine for the embedded model)") if small else warn("gpu", message, ""))
    if any(v.load_4bit for v in local):
        results.append(_check_bitsandbytes(torch, cuda))
    return results


def _check_bitsandbytes(torch: object, cuda: bool) -> Result:
    try:
        import bitsandbytes
        import bitsandbytes.functional as bnb_functional
    except Exception as error:  # a broken install raises anything from its import-time probing
        return fail("bitsandbytes", f"cannot import bitsandbytes ({_short(error)})", "pip install bitsandbytes")
    version = bitsandbytes.__version__
    import torch as torch_module

    device = "cuda" if cuda else "cpu"
    try:
        sample = torch_module.randn(64, 64, dtype=torch_module.bfloat16, device=device)
        bnb_functional.quantize_4bit(sample, quant_type="nf4")
    except Exception as error:
        needs = f"bitsandbytes >= {CPU_NF4_BITSANDBYTES}" if not cuda else "the CUDA build of bitsandbytes"
        problem = f"{version} cannot quantize to nf4 on {device} ({_short(error)})"
        return fail("bitsandbytes", problem, f"install {needs}")
    if not cuda:
        return warn("bitsandbytes", f"{version}: nf4 runs on the CPU, slowly", "use a CUDA GPU for 7B models")
    return ok("bitsandbytes", f"{version}: nf4 works on CUDA")


# -- database and model servers ----------------------------------------------------------------


def check_database(path: str) -> Result:
    """The database's folder is writable, the file opens, its schema is current or migratable and intact."""
    from bot.store._migrations import latest_version

    if path == ":memory:":
        return warn("database", "[storage] path = :memory: keeps nothing across restarts", "set a file path")
    file = Path(path).expanduser()
    folder = file.parent
    existing = next((f for f in (folder, *folder.parents) if f.exists()), folder)
    try:  # a probe file, not os.access: it also catches read-only mounts and works the same for root
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".doctor-"):
            pass
    except OSError as error:
        return fail(
            "database",
            f"cannot write in the database folder {folder} ({error.strerror or error})",
            "make the folder writable for this user, or set [storage] path elsewhere",
        )
    if not file.exists():
        return ok("database", f"{file} will be created at the first start")
    try:
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
        db.close()
    except sqlite3.Error as error:
        return fail("database", f"{file} cannot be read as SQLite ({error})", "restore a backup or move the file away")
    if integrity != ["ok"]:
        return fail("database", f"{file} is damaged: {'; '.join(integrity[:3])}", "restore a backup (sqlite3 .recover)")
    latest = latest_version()
    if version > latest:
        return fail("database", f"{file} has schema {version}, newer than this bot ({latest})", "upgrade the bot")
    state = "current" if version == latest else f"{version}, migrated to {latest} at the next start"
    return ok("database", f"{file} (schema {state}; integrity ok)")


async def check_model_server(variant: ModelConfig) -> Result:
    """A remote variant's servers answer GET {base_url}/models; only a warning, since they may start later."""
    name = f"model {variant.name}"
    headers = {}
    if variant.api_key_env and os.environ.get(variant.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[variant.api_key_env]}"
    answering: list[str] = []
    for base_url in variant.base_urls:
        url = base_url.rstrip("/") + "/models"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=NETWORK_TIMEOUT)) as session,
                session.get(url, headers=headers) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return warn(name, f"{url} cannot be reached ({type(error).__name__})", "start the model server")
        if status >= 400:
            return warn(name, f"{url} answered {status}", "check base_url and api_key_env")
        answering.append(url)
    return ok(name, f"{', '.join(answering)} answer" + ("s" if len(answering) == 1 else ""))


# -- everything --------------------------------------------------------------------------------


async def diagnose(config_path: str | None, environ: Mapping[str, str] | None = None) -> list[Result]:
    """Every check, in the order a new operator would fix things."""
    from bot.frontends.discord.app.runner import TOKEN_VARIABLE

    env = os.environ if environ is None else environ
    config_result, config = check_config(config_path)
    if config is None:
        return [config_result, warn("doctor", "the other checks need a valid config", "fix the config first")]
    results = [config_result, *check_access(config.access)]
    token = env.get(TOKEN_VARIABLE, "").strip() or None
    shape = check_token_shape(token)
    results.append(shape)
    valid_token: str | None = None
    if shape.status is Status.OK and token is not None:
        from bot.frontends.discord.app.endpoints import configure_endpoints

        configure_endpoints(config.discord.api_base, config.discord.gateway_url)
        online = await check_token_online(token)
        results.append(online)
        if online.status is not Status.FAIL:
            valid_token = token
    results.append(await check_intents(valid_token, config.discord.message_content))
    for variant in config.models:
        results.extend(check_model_files(variant))
    servers = [v for v in config.models if v.backend == "openai"]
    results.extend(await asyncio.gather(*(check_model_server(v) for v in servers)))
    results.append(check_versions())
    results.extend(check_gpu(config))
    results.append(check_database(config.storage.path))
    return results


def report(results: Iterable[Result]) -> tuple[str, int]:
    """The printed report and the exit code: 0 only when nothing failed."""
    results = list(results)
    failed = sum(r.status is Status.FAIL for r in results)
    lines = [r.line() for r in results]
    lines.append(f"{failed} problem(s) to fix" if failed else "all checks passed")
    return "\n".join(lines) + "\n", 1 if failed else 0
