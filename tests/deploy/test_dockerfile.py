"""deploy/Dockerfile: hadolint-clean at every severity, multi-stage with CPU-only torch, non-root, a
healthcheck, and `lore` as the entrypoint for every role. (It is never built here: no engine.)"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.conftest import REPO
from tests.deploy.conftest import DEPLOY, lore_accepts, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def test_hadolint_finds_nothing_at_any_severity() -> None:
    result = run(tool("hadolint"), "--failure-threshold", "info", "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    version = run(tool("hadolint"), "--version").stdout
    assert "Haskell Dockerfile Linter" in version


def test_the_linter_does_catch_a_mistake(tmp_path: pytest.TempPathFactory) -> None:
    broken = tmp_path / "Dockerfile"  # type: ignore[operator]
    broken.write_text(
        DOCKERFILE.read_text().replace(
            "RUN python -m venv /opt/lore", "RUN cd /tmp && python -m venv /opt/lore"
        )
    )
    result = run(tool("hadolint"), "--failure-threshold", "info", "--no-color", str(broken))
    assert result.returncode == 1 and "DL3003" in result.stdout  # "use WORKDIR to switch to a directory"


def test_the_image_is_multi_stage_slim_cpu_only_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [name for _, name in stages] == ["builder", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "ARG TORCH_VERSION=2.13.0+cpu" in text and "download.pytorch.org/whl/cpu" in text
    assert "grep -qi '^nvidia'" in text  # the build fails if CUDA packages get in
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in text  # the optional llama.cpp build is portable
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert "HEALTHCHECK" in runtime and "HEALTHCHECK_URL" in runtime
    assert re.search(r'^ENTRYPOINT \["tini", "--", "lore"\]$', runtime, re.M)
    assert re.search(r'^CMD \["serve"\]$', runtime, re.M)
    assert "build-essential" not in runtime  # compilers stay in the builder


def test_it_copies_every_package_and_the_build_context_holds_nothing_else() -> None:

    text = DOCKERFILE.read_text()
    packages = [
        p.rstrip("*")
        for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
            "find"
        ]["include"]
    ]
    for package in packages:
        assert f"COPY {package} ./{package}" in text
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert (
        ignore[[line for line in ignore if line and not line.startswith("#")].index("*") and 0]
        or "*" in ignore
    )
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "README.md", *packages}


@pytest.mark.parametrize(
    "role",
    [
        ["serve"],
        ["slack"],
        ["discord"],
        ["worker", "-Q", "ingest"],
        ["worker", "-Q", "feedback"],
        ["beat"],
        ["doctor"],
    ],
)
def test_one_image_runs_every_role(role: list[str]) -> None:
    lore_accepts(role)
