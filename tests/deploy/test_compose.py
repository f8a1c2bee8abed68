"""docker compose: the compose files, Dockerfiles and pins agree with each other and with the code.

There is no Docker engine here, so the images are not built; the compose files are checked with
Debian's docker-compose (`docker-compose config`), which validates them against the Compose schema
and merges the CPU override the way `docker compose` does.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

import dashboard.settings
from fflab.queue import CUDA_TRAIN_QUEUE, TRAIN_QUEUE, worker_queues
from fflab.settings import Settings
from tests.support.dockerfiles import dockerfile_env, dockerfile_instructions, final_stage
from tests.support.packages import absolute_imports, canonical
from tests.support.paths import REPO
from tests.support.processes import environment_without
from tests.support.settings import TestSettings

GPU_FILES = ["docker-compose.yml"]
CPU_FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]
FF_NAME = re.compile(r"\bFF_[A-Z][A-Z0-9_]*")
# Where the application reads its settings: the packages, the local-stack scripts, the test setup.
CODE_PATHS = [
    "ffcore", "fflab", "api", "worker", "dashboard", "scripts", "Procfile", "tests/support/settings.py",
]  # fmt: skip


# --- helpers ------------------------------------------------------------------------------------


def compose_config(files: list[str], tmp_path: Path, env_file_text: str = "") -> dict:
    """`docker-compose config` of the files, with variables only from `env_file_text`."""
    key = (tuple(files), env_file_text)
    if key not in _configs:  # each call takes a second or two: run each only once
        binary = shutil.which("docker-compose")
        if binary is None:
            pytest.fail("docker-compose is not installed (make system-deps installs Debian's docker-compose)")
        env_file = tmp_path / "compose.env"
        env_file.write_text(env_file_text)
        env = environment_without("FF_", "COMPOSE_")
        args = [binary, "--project-directory", str(REPO), "--env-file", str(env_file)]
        for name in files:
            args += ["-f", str(REPO / name)]
        result = subprocess.run(args + ["config"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        _configs[key] = yaml.safe_load(result.stdout)
    return copy.deepcopy(_configs[key])


_configs: dict[tuple, dict] = {}


def settings_classes() -> list[type[BaseSettings]]:
    """fflab's Settings and the dashboard's own settings class."""
    dashboard_classes = [
        cls
        for _, cls in inspect.getmembers(dashboard.settings, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls is not BaseSettings
    ]
    assert dashboard_classes, "dashboard/settings.py defines no settings class"
    return [Settings, *dashboard_classes]


def code_files() -> list[Path]:
    files = []
    for name in CODE_PATHS:
        path = REPO / name
        files += (
            sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".py", ".sh"})
            if path.is_dir()
            else [path]
        )
    return files


def known_variables() -> set[str]:
    """Every FF_* variable the code reads: settings fields (prefix + name) and names in the code."""
    known = set()
    for cls in [*settings_classes(), TestSettings]:
        prefix = cls.model_config.get("env_prefix", "")
        known |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    for path in code_files():
        # A name ending in "_" is the start of one built at run time (f"FF_MAX_{...}"), not a variable.
        known |= {
            name for name in FF_NAME.findall(path.read_text(errors="replace")) if not name.endswith("_")
        }
    return known


def service_settings(service: dict, settings_class: type[BaseSettings], monkeypatch) -> BaseSettings:
    """The settings a service's process sees: its image's ENV overlaid with the compose environment."""
    for name in [n for n in os.environ if n.startswith("FF_")]:
        monkeypatch.delenv(name)
    image_env = dockerfile_env(REPO / service["build"]["dockerfile"]) if "build" in service else {}
    image_env = {name: value for name, value in image_env.items() if name.startswith("FF_")}
    for name, value in {**image_env, **service.get("environment", {})}.items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    return settings_class()


def port_target(service: dict) -> list[tuple[int, int]]:
    return [(published, target) for _, published, target in published_ports(service)]


def published_ports(service: dict) -> list[tuple[str | None, int, int]]:
    """(host address, published port, container port) of each port: docker-compose prints ports with
    a host address as "ADDRESS:PUBLISHED:TARGET/tcp", others as mappings."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            host, published, target = port.split("/")[0].rsplit(":", 2)
            ports.append((host, int(published), int(target)))
        else:
            ports.append((port.get("host_ip"), int(port["published"]), int(port["target"])))
    return ports


def healthcheck_command(service: dict) -> str:
    return " ".join(service["healthcheck"]["test"])


# --- the compose files ----------------------------------------------------------------------------


def test_gpu_stack_has_redis_api_worker_dashboard_wired_to_the_settings(tmp_path, monkeypatch):
    services = compose_config(GPU_FILES, tmp_path)["services"]
    assert set(services) == {"redis", "api", "worker", "dashboard"}
    redis_service, api, worker, dash = (services[n] for n in ("redis", "api", "worker", "dashboard"))

    # Redis: append-only on a named volume, never evicts, healthy when it answers, not published.
    command = " ".join(redis_service["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command and "--maxmemory 2gb" in command
    assert "ports" not in redis_service
    assert "redis-cli" in healthcheck_command(redis_service)
    assert any(v.startswith("redis-data:/data") for v in redis_service["volumes"])
    assert ":" in redis_service["image"] and not redis_service["image"].endswith(":latest")

    # API: listens on all interfaces on the port it publishes, checks its own /healthz.
    api_settings = service_settings(api, Settings, monkeypatch)
    assert api_settings.api_host == "0.0.0.0"
    assert port_target(api) == [(8000, api_settings.api_port)]
    assert f"127.0.0.1:{api_settings.api_port}/api/v1/healthz" in healthcheck_command(api)
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert api_settings.redis_url == "redis://redis:6379/0"

    # Worker: one NVIDIA GPU; MNIST kept in a named volume where ffcore caches downloads.
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    worker_settings = service_settings(worker, Settings, monkeypatch)
    # It asks for the GPU, not 'auto': without one it stops saying why instead of training on the CPU.
    # It takes the runs asking for 'cuda' and the shared queue's.
    assert worker_settings.worker_device == "cuda"
    assert worker_queues(worker_settings.worker_device) == [CUDA_TRAIN_QUEUE, TRAIN_QUEUE]
    assert worker_settings.redis_url == api_settings.redis_url
    assert worker_settings.data_dir is None  # so ffcore downloads into its cache directory, once
    assert "datasets:/home/fflab/.cache/fflab/datasets:rw" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"

    # Dashboard: serves the port it publishes and reaches the API by its service name and port.
    dash_class = settings_classes()[1]
    dash_settings = service_settings(dash, dash_class, monkeypatch)
    assert dash_settings.dashboard_host == "0.0.0.0"
    assert port_target(dash) == [(8501, dash_settings.dashboard_port)]
    assert dash_settings.api_url == f"http://api:{api_settings.api_port}"
    assert dash["depends_on"]["api"]["condition"] == "service_healthy"
    assert f"127.0.0.1:{dash_settings.dashboard_port}/_stcore/health" in healthcheck_command(dash)

    # Named volumes, so that MNIST and the runs survive `docker compose down`.
    assert {"redis-data", "datasets"} <= set(compose_config(GPU_FILES, tmp_path)["volumes"])


def test_ffcore_caches_datasets_where_the_worker_volume_is_mounted(monkeypatch):
    from ffcore.data import default_data_dir

    monkeypatch.setenv("HOME", "/home/fflab")  # the images' user
    assert str(default_data_dir()) == "/home/fflab/.cache/fflab/datasets"


def test_cpu_variant_needs_no_nvidia_runtime_and_keeps_a_worker(tmp_path, monkeypatch):
    config = compose_config(CPU_FILES, tmp_path)
    services = config["services"]
    # `docker compose up` starts only services without profiles: the GPU worker is left out.
    started = {name: s for name, s in services.items() if not s.get("profiles")}
    assert set(started) == {"redis", "api", "worker-cpu", "dashboard"}
    for name, service in started.items():
        assert "devices" not in yaml.safe_dump(service.get("deploy", {})), name
    cpu_worker = services["worker-cpu"]
    assert cpu_worker["command"] == ["python", "-m", "worker"]
    # It runs the API's image (CPU PyTorch) and keeps MNIST in the same volume as the GPU worker.
    assert cpu_worker["image"] == services["api"]["image"]
    assert cpu_worker["build"] == services["api"]["build"]
    assert cpu_worker["volumes"] == services["worker"]["volumes"]
    assert cpu_worker["environment"]["FF_REDIS_URL"] == services["worker"]["environment"]["FF_REDIS_URL"]
    assert cpu_worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # It trains on the CPU, so it takes the shared queue only: a run asking for 'cuda' waits for a GPU
    # worker instead of reaching it.
    cpu_settings = service_settings(cpu_worker, Settings, monkeypatch)
    assert cpu_settings.worker_device == "cpu" and worker_queues(cpu_settings.worker_device) == [TRAIN_QUEUE]


def test_images_that_train_record_the_commit_they_were_built_from(tmp_path):
    """FF_GIT_COMMIT from the shell becomes a build argument, which the image turns into the worker's
    FF_GIT_COMMIT (an image has no .git to read it from)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    services = compose_config(CPU_FILES, tmp_path, env_file_text=f"FF_GIT_COMMIT={commit}\n")["services"]
    for name in ("api", "worker", "worker-cpu"):
        build = services[name]["build"]
        assert build["args"]["GIT_COMMIT"] == commit, name
        dockerfile = (REPO / build["dockerfile"]).read_text()
        assert 'ARG GIT_COMMIT=""' in dockerfile and "ENV FF_GIT_COMMIT=${GIT_COMMIT}" in dockerfile, name


def test_redis_url_can_point_workers_at_another_host(tmp_path):
    """FF_REDIS_URL from the shell reaches the API and the workers (workers on other machines)."""
    url = "redis://:secret@10.0.0.5:6379/0"
    services = compose_config(CPU_FILES, tmp_path, env_file_text=f"FF_REDIS_URL={url}\n")["services"]
    for name in ("api", "worker", "worker-cpu"):
        assert services[name]["environment"]["FF_REDIS_URL"] == url, name


def test_every_ff_variable_is_known_to_the_code_and_documented(tmp_path):
    known = known_variables()
    assert {"FF_REDIS_URL", "FF_API_PORT", "FF_API_URL", "FF_DASHBOARD_PORT"} <= known

    used = set()
    for files in (GPU_FILES, CPU_FILES):
        for service in compose_config(files, tmp_path)["services"].values():
            used |= {name for name in service.get("environment", {}) if name.startswith("FF_")}
    for path in (REPO / "docker").glob("*.Dockerfile"):
        used |= {name for name in dockerfile_env(path) if name.startswith("FF_")}
    raw_compose = "".join((REPO / name).read_text() for name in CPU_FILES)
    used |= set(FF_NAME.findall(raw_compose))
    assert used - known == set(), "FF_ variables in the compose files or Dockerfiles that no code reads"

    readme = (REPO / "README.md").read_text()
    undocumented = {name for name in known if not re.search(rf"\b{name}\b", readme)}
    assert undocumented == set(), "FF_ variables the code reads but the README does not document"


# --- the Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["api", "worker", "dashboard"])
def test_images_run_as_a_non_root_user_with_pinned_dependencies(service, tmp_path):
    build = compose_config(GPU_FILES, tmp_path)["services"][service]["build"]
    path = REPO / build["dockerfile"]
    assert path.is_file()
    users = [rest for keyword, rest in final_stage(path) if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    runs = [rest for keyword, rest in dockerfile_instructions(path) if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs
    for run in installs:
        assert "-c /tmp/constraints.txt" in run, f"unpinned install: {run}"
    copies = [rest for keyword, rest in dockerfile_instructions(path) if keyword == "COPY"]
    assert "docker/constraints.txt /tmp/constraints.txt" in copies


def test_each_image_gets_the_right_pytorch():
    api = (REPO / "docker" / "api.Dockerfile").read_text()
    worker = (REPO / "docker" / "worker.Dockerfile").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in api  # the CPU build
    assert "whl/cpu" not in worker  # PyPI's Linux wheels: the CUDA build
    assert "'.[service]'" in api and "'.[service]'" in worker
    # The dashboard image installs only the dashboard extra and copies only the dashboard's code.
    dash_runs = " ".join(
        rest
        for keyword, rest in dockerfile_instructions(REPO / "docker/dashboard.Dockerfile")
        if keyword == "RUN"
    )
    assert "'.[dashboard]'" in dash_runs and "torch" not in dash_runs
    dash_copies = [
        source
        for keyword, rest in final_stage(REPO / "docker/dashboard.Dockerfile")
        if keyword == "COPY" and not rest.startswith("--from")
        for source in shlex.split(rest)[:-1]
    ]
    # Its own code alone: the start-run form reads the run schema from the API (GET /run-options).
    assert dash_copies == ["dashboard"]


def test_the_dashboard_extra_and_code_need_no_pytorch_redis_or_service_code():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dashboard_requirements = " ".join(extras["dashboard"]).lower()
    for heavy in ("torch", "redis", "celery", "fflab["):
        assert heavy not in dashboard_requirements, heavy

    forbidden = {"torch", "torchvision", "safetensors", "redis", "celery", "ffcore", "fflab", "api", "worker"}
    for path in sorted((REPO / "dashboard").rglob("*.py")):
        for module, line in absolute_imports(path):
            bad = {module.split(".")[0]} & forbidden
            assert not bad, f"{path.relative_to(REPO)}:{line} imports {bad}: not in the dashboard image"


def test_dockerignore_admits_exactly_what_the_dockerfiles_copy():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore should exclude everything by default (no .venv, .git)"
    admitted = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for path in (REPO / "docker").glob("*.Dockerfile"):
        for keyword, rest in dockerfile_instructions(path):
            if keyword == "COPY" and not rest.startswith("--from"):
                for source in shlex.split(rest)[:-1]:
                    parts = Path(source).parts
                    assert any("/".join(parts[:n]) in admitted for n in range(1, len(parts) + 1)), (
                        f"{path.name} copies {source}, which .dockerignore excludes"
                    )
                    assert (REPO / source).exists(), f"{path.name} copies {source}, which does not exist"


def test_constraints_pin_every_dependency_at_the_tested_version():
    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonical(name)] = version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + [
        req for extra in ("core", "service", "dashboard") for req in project["optional-dependencies"][extra]
    ]
    names = {canonical(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in runtime}
    names.discard("fflab")
    missing = names - set(pins)
    assert not missing, f"not pinned in docker/constraints.txt: {missing}; run make upgrade-deps"
    stale = {
        name: (pinned, installed)
        for name, pinned in pins.items()
        if (installed := installed_version(name)).split("+")[0] != pinned.split("+")[0]
    }
    assert not stale, (
        f"constraints differ from the venv (pinned, installed): {stale}; "
        "make venv installs the pins; make upgrade-deps moves them"
    )


def installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def test_the_redis_override_shown_in_the_compose_comments_is_valid(tmp_path):
    """The docker-compose.override.yml that docker-compose.yml's comments give for workers on other hosts."""
    lines = (REPO / "docker-compose.yml").read_text().splitlines()
    start = lines.index("#   services:")
    snippet = []
    for line in lines[start:]:
        if line.strip() == "#":
            break
        snippet.append(line.removeprefix("# "))
    example = tmp_path / "override.yml"
    example.write_text("\n".join(snippet) + "\n")
    services = compose_config(["docker-compose.yml", str(example)], tmp_path)["services"]
    redis_service = services["redis"]
    assert port_target(redis_service) == [(6379, 6379)]
    assert "--requirepass change-me" in " ".join(redis_service["command"])
    assert "--maxmemory-policy noeviction" in " ".join(redis_service["command"])
    assert "-a change-me" in healthcheck_command(redis_service)


def test_ports_are_published_on_loopback_unless_deliberately_opened(tmp_path):
    services = compose_config(GPU_FILES, tmp_path)["services"]
    for name in ("api", "dashboard"):
        assert [host for host, _, _ in published_ports(services[name])] == ["127.0.0.1"], name
    assert services["api"]["environment"]["FF_PUBLISHED_HOST"] == "127.0.0.1"
    opened = compose_config(GPU_FILES, tmp_path, env_file_text="FF_PUBLISHED_HOST=0.0.0.0\n")["services"]
    assert [host for host, _, _ in published_ports(opened["api"])] == ["0.0.0.0"]
    # ... and then the API, told where it is published, refuses to start without a key.
    assert opened["api"]["environment"]["FF_PUBLISHED_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("files", [GPU_FILES, CPU_FILES], ids=["gpu", "cpu"])
def test_every_container_is_hardened_and_memory_bounded(files, tmp_path):
    services = compose_config(files, tmp_path)["services"]
    for name, service in services.items():
        if "gpu" in service.get("profiles", []) and files == CPU_FILES:
            continue  # the GPU worker does not start in the CPU variant
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert service.get("mem_limit"), f"{name} has no memory limit"
    # Redis runs as its image's user from the start: its entrypoint needs no capability to switch to it.
    assert services["redis"]["user"] == "redis"
    # Its memory limit leaves room above Redis's own --maxmemory cap.
    command = services["redis"]["command"]
    assert _bytes(services["redis"]["mem_limit"]) > _bytes(command[command.index("--maxmemory") + 1])


def _bytes(size) -> int:
    """A compose or Redis size ('3g', '2gb', 3221225472) in bytes."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"(\d+)([kmg])b?", str(size).lower())
    assert match, size
    return int(match[1]) * 1024 ** "kmg".index(match[2]) * 1024


def test_keys_reach_the_api_and_never_the_dashboard(tmp_path):
    env = "FF_API_KEY=write-key\nFF_READ_KEY=read-key\n"
    services = compose_config(GPU_FILES, tmp_path, env_file_text=env)["services"]
    assert services["api"]["environment"]["FF_API_KEY"] == "write-key"
    assert services["api"]["environment"]["FF_READ_KEY"] == "read-key"
    # The dashboard lends no key: each visitor types theirs into its sidebar.
    assert not {"FF_API_KEY", "FF_READ_KEY"} & set(services["dashboard"].get("environment", {}))
