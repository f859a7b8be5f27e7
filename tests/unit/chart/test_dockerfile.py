"""The Dockerfile's structure: pinned multi-stage build from wheels, non-root runtime, and a CMD that
starts the same server the Helm chart starts (no Docker daemon needed: the file is parsed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.chart.rendering import ROOT, Rendered

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM this instruction belongs to


def parse(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE)


@pytest.fixture(scope="module")
def runtime(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the runtime stage, found {len(found)}"
    return found[0]


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def test_multi_stage_build(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS builder\b", froms[0].arguments, re.IGNORECASE)
    runtime_copies = [i for i in instructions if i.stage == len(froms) - 1 and i.keyword == "COPY"]
    assert any("--from=builder" in i.arguments for i in runtime_copies)


def test_base_images_are_pinned(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.keyword != "FROM":
            continue
        image = instruction.arguments.split()[0]
        if image.startswith("${"):
            pytest.fail(f"base image from a build argument cannot be checked: {image}")
        if "@sha256:" in image:
            assert re.fullmatch(r".+@sha256:[0-9a-f]{64}", image), image
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: tag is not an exact version"


def test_runtime_runs_as_numeric_non_root_user(runtime: list[Instruction]) -> None:
    user = only(runtime, "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == 65532, user
    assert gid.isdigit() and int(gid) != 0, user
    last_user_index = max(n for n, i in enumerate(runtime) if i.keyword == "USER")
    assert not any(i.keyword == "RUN" for i in runtime[last_user_index:]), "nothing may run after USER"


def test_chart_runs_the_image_as_the_image_user() -> None:
    sc = Rendered().container["securityContext"]
    assert f"{sc['runAsUser']}:{sc['runAsGroup']}" == "65532:65532"


def test_entrypoint_is_signet_in_exec_form(runtime: list[Instruction]) -> None:
    assert exec_form(only(runtime, "ENTRYPOINT")) == ["signet"]


def test_cmd_starts_the_server_the_chart_starts(runtime: list[Instruction]) -> None:
    cmd = exec_form(only(runtime, "CMD"))
    chart_args = Rendered().args
    assert cmd == chart_args[: len(cmd)]
    for flag in ("--tls-cert", "--tls-key", "--policies", "--port", "--host"):
        assert flag in cmd, flag
        assert cmd[cmd.index(flag) + 1] == chart_args[chart_args.index(flag) + 1], flag


def test_exposes_the_chart_container_port_and_leaves_health_to_kubernetes(runtime: list[Instruction]) -> None:
    port = Rendered().container["ports"][0]["containerPort"]
    assert only(runtime, "EXPOSE").arguments.split() == [str(port)]
    assert only(runtime, "HEALTHCHECK").arguments.upper() == "NONE"


def test_runtime_environment_matches_the_chart(runtime: list[Instruction]) -> None:
    env_text = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    env = dict(re.findall(r"(\w+)=(\S+)", env_text))
    chart_env = {e["name"]: e.get("value") for e in Rendered().container["env"]}
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
        assert env[var].startswith("/var/cache/signet/")
        assert env[var] == chart_env[var]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_installs_from_wheels_built_in_the_builder(instructions: list[Instruction]) -> None:
    runs = [i for i in instructions if i.keyword == "RUN"]
    builder_runs = " ".join(i.arguments for i in runs if i.stage == 0)
    assert re.search(r"pip wheel --no-deps --wheel-dir /wheels \.", builder_runs)
    assert re.search(r"pip install --no-index --find-links /wheels", builder_runs)
    assert not any(i.stage > 0 and "pip install" in i.arguments for i in runs), "the runtime stage installs nothing"


def test_no_remote_scripts_piped_to_a_shell(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        assert not re.search(r"(curl|wget)[^|;&]*\|\s*(ba|z)?sh\b", instruction.arguments), instruction
        if instruction.keyword == "ADD":
            assert "://" not in instruction.arguments, instruction


def test_dockerignore_keeps_the_context_small_but_complete(instructions: list[Instruction]) -> None:
    lines = DOCKERIGNORE.read_text().splitlines()
    patterns = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for excluded in (".git", ".venv", "tests", "**/__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"):
        assert excluded in patterns, excluded
    copied = [i.arguments.split()[:-1] for i in instructions if i.keyword == "COPY" and "--from" not in i.arguments]
    for sources in copied:
        for source in sources:
            assert source not in patterns, f"{source} is COPYed but excluded by .dockerignore"
            assert (ROOT / source).exists(), source
