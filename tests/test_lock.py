"""The lock (requirements/): every dependency pinned with hashes inside pyproject.toml's ranges, and used.

`make` installs requirements/dev.txt and the Docker image requirements/main.txt, both after torch by version
(requirements/torch.txt); `make lock` writes them with pip-compile.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.doctor import LOCK_FOLDER, VERSIONED, locked_versions

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ENTRY = re.compile(r"^(\S+)==(\S+)((?: \\\n    --hash=sha256:[0-9a-f]{64})+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    """``requirements/<name>``'s pins (names canonical), each checked to carry at least one sha256 hash."""
    text = (ROOT / "requirements" / name).read_text()
    found = {canonicalize_name(m[1]): m[2] for m in ENTRY.finditer(text)}
    assert len(found) == len(re.findall(r"^\S+==", text, re.MULTILINE)), f"a pin in {name} has no hash"
    return found


def requirements(*extras: str) -> list[Requirement]:
    listed = PROJECT["dependencies"] + [r for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    return [Requirement(r) for r in listed]


def test_the_dev_lock_pins_every_dependency_within_its_range() -> None:
    """Each dependency and dev tool of pyproject.toml is in dev.txt at a version its range allows; torch is not."""
    locked = pins("dev.txt")
    for requirement in requirements("dev"):
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert name not in locked  # by version only, in torch.txt: its build (and hash) differs per machine
            continue
        assert name in locked, requirement
        assert requirement.specifier.contains(locked[name], prereleases=True), (requirement, locked[name])


def test_the_image_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    """main.txt holds the bot's own dependencies at dev.txt's versions, and none of the test tools."""
    main, dev = pins("main.txt"), pins("dev.txt")
    assert main.items() <= dev.items()
    for requirement in requirements():
        assert canonicalize_name(requirement.name) in main or requirement.name == "torch"
    assert not {"pytest", "ruff", "mypy", "hypothesis", "pip-tools"} & set(main)


def test_torch_is_pinned_to_one_version_inside_the_range() -> None:
    """torch.txt names exactly one torch version, which pyproject.toml's range allows."""
    lines = [line for line in (ROOT / "requirements" / "torch.txt").read_text().splitlines() if line[:1].isalnum()]
    (line,) = lines
    (torch,) = [r for r in requirements() if r.name == "torch"]
    assert line.startswith("torch==") and torch.specifier.contains(line.removeprefix("torch=="))


def test_doctor_reads_every_versioned_package_from_the_lock() -> None:
    """The doctor's versions line compares all five packages against this checkout's lock."""
    assert LOCK_FOLDER == ROOT / "requirements"
    assert {canonicalize_name(name) for name in VERSIONED} <= set(locked_versions())


def test_make_and_the_image_install_the_lock_as_it_is() -> None:
    """Both install the lock with --no-deps --require-hashes, after torch.txt and before the bot itself."""
    makefile, dockerfile = (ROOT / "Makefile").read_text(), (ROOT / "Dockerfile").read_text()
    for text, lock in ((makefile, "$(LOCK)"), (dockerfile, "requirements/main.txt")):
        torch = text.index("-r requirements/torch.txt")
        locked = text.index(f"--no-deps --require-hashes -r {lock}")
        assert torch < locked < text.index("--no-deps --require-hashes -r requirements/embedded.txt")
    assert "LOCK := requirements/dev.txt" in makefile
