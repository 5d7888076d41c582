"""The shipped docker-compose.yml, Dockerfile and Temporal dynamic config.

No Docker engine is available where these tests run, so they read the files
and check what a user of `docker compose up` relies on: which images run,
which ports are published, how the services find each other, the start-up
order, and that every `runrecord ...` command named there exists in the CLI.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

INFRA_IMAGES = {
    "postgresql": {"postgres"},
    "records-db": {"postgres"},
    "temporal-schema": {"temporalio/admin-tools"},
    "temporal": {"temporalio/server"},
    "temporal-namespace": {"temporalio/admin-tools"},
    "temporal-ui": {"temporalio/ui"},
}
RUNRECORD_SERVICES = ["runrecord-migrate", "runrecord-worker", "runrecord-mirror"]
# Services that connect to Temporal and so need its namespace to exist.
TEMPORAL_CLIENTS = ["runrecord-worker", "runrecord-mirror"]
# The first Temporal Server line with Workflow Pause.
WORKFLOW_PAUSE_SERVER = (1, 30)


def _load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# -- helpers that normalise the compose file's alternative spellings ---------


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """`environment` as a dict, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _image_name(image: str) -> str:
    """Repository part of an image reference: tag, digest and Docker Hub prefix removed."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: name.rindex(":")]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _image_tag(image: str) -> str | None:
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _release(image: str) -> tuple[int, ...]:
    """The major.minor[.patch] release an image tag names, such as (1, 30, 1)."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", _image_tag(image) or "")
    assert match, f"{image!r} does not pin a release tag"
    return tuple(int(part) for part in match.groups() if part is not None)


def _published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short or long port syntax."""
    published: set[tuple[int, int]] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                published.add((int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]  # drop "/tcp"
        parts = spec.rsplit(":", 2)
        if len(parts) >= 2:  # [ip:]host:container
            published.add((int(parts[-2]), int(parts[-1])))
    return published


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency name -> condition; the list form means `service_started`."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for each mount, from short or long volume syntax."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            if len(parts) >= 2:
                mounts.append((parts[0], parts[1]))
    return mounts


def _runrecord_commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Every `runrecord ...` argv the compose file runs, labelled by where it appears."""
    found = []
    for name, service in (compose.get("services") or {}).items():
        candidates = {
            "command": _argv(service.get("command")),
            "entrypoint": _argv(service.get("entrypoint")),
        }
        healthcheck = (service.get("healthcheck") or {}).get("test")
        if isinstance(healthcheck, list) and healthcheck[:1] == ["CMD"]:
            candidates["healthcheck"] = [str(v) for v in healthcheck[1:]]
        elif isinstance(healthcheck, list) and healthcheck[:1] == ["CMD-SHELL"]:
            candidates["healthcheck"] = _argv(healthcheck[1])
        for where, argv in candidates.items():
            if argv[:1] == ["runrecord"]:
                found.append((f"{name}.{where}", argv))
    return found


def _dockerfile_cmd() -> list[str]:
    """The argv of the Dockerfile's last CMD instruction."""
    cmds = [
        line.strip()[len("CMD") :].strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip().upper().startswith("CMD ")
    ]
    assert cmds, "the Dockerfile has no CMD"
    last = cmds[-1]
    return json.loads(last) if last.startswith("[") else shlex.split(last)


def resolve_cli_command(argv: list[str], app: Any = None) -> Any:
    """Walk `runrecord <group> ... <command>` through the CLI and return the command.

    Fails the test if a word does not name a subcommand or the walk ends at a
    group (which would only print help). Words after the command (arguments,
    options) are not checked. `app` defaults to `runrecord.cli.app`.
    """
    import typer.main

    assert argv and argv[0] == "runrecord", f"not a runrecord command line: {argv}"
    if app is None:
        from runrecord.cli import app
    command = typer.main.get_command(app)
    path = ["runrecord"]
    for word in argv[1:]:
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict) or word.startswith("-"):
            break  # reached a leaf command; the rest are its parameters
        assert word in subcommands, (
            f"`{' '.join(path)}` has no subcommand {word!r} "
            f"(it has: {', '.join(sorted(subcommands)) or 'none'})"
        )
        command = subcommands[word]
        path.append(word)
    is_group = isinstance(getattr(command, "commands", None), dict)
    assert not is_group or getattr(command, "invoke_without_command", False), (
        f"`{' '.join(path)}` is a command group, not a command "
        f"(choose one of: {', '.join(sorted(command.commands))})"
    )
    return command


# -- the compose file --------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_compose()


def test_compose_file_uses_compose_spec(compose: dict[str, Any]) -> None:
    # The top-level `version` key is obsolete and makes Compose v2 warn.
    assert "version" not in compose
    assert isinstance(compose.get("services"), dict)


@pytest.mark.parametrize("name", sorted(INFRA_IMAGES))
def test_infrastructure_runs_official_pinned_images(compose: dict[str, Any], name: str) -> None:
    service = _service(compose, name)
    image = service.get("image")
    assert image, f"{name} must run a published image, not a local build"
    assert "build" not in service
    assert _image_name(image) in INFRA_IMAGES[name], image
    tag = _image_tag(image)
    assert tag and tag != "latest", f"{name} must pin an image version, got {image!r}"


@pytest.mark.parametrize("name", RUNRECORD_SERVICES)
def test_runrecord_services_build_from_repo_dockerfile(compose: dict[str, Any], name: str) -> None:
    build = _service(compose, name).get("build")
    assert build is not None, f"{name} must be built from this repository"
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    assert context == REPO
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.resolve() == DOCKERFILE
    assert DOCKERFILE.is_file()


def test_dockerfile_installs_the_package_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert "pip install" in text
    users = [
        line.split()[1]
        for line in text.splitlines()
        if line.strip().upper().startswith("USER ") and len(line.split()) > 1
    ]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"


@pytest.mark.parametrize(
    ("name", "host", "container"),
    [
        ("temporal", 7233, 7233),
        ("temporal-ui", 8080, 8080),
        ("postgresql", 5432, 5432),
        # Second PostgreSQL on the host: 5433, so it does not clash with the first.
        ("records-db", 5433, 5432),
    ],
)
def test_published_ports(compose: dict[str, Any], name: str, host: int, container: int) -> None:
    assert (host, container) in _published_ports(_service(compose, name))


def test_host_ports_do_not_collide(compose: dict[str, Any]) -> None:
    seen: dict[int, str] = {}
    for name, service in compose["services"].items():
        for host, _ in _published_ports(service):
            assert host not in seen, f"{name} and {seen[host]} both publish host port {host}"
            seen[host] = name


def test_worker_reaches_temporal_service(compose: dict[str, Any]) -> None:
    env = _environment(_service(compose, "runrecord-worker"))
    host, _, port = env["TEMPORAL_ADDRESS"].partition(":")
    assert host == "temporal" and host in compose["services"]
    assert int(port) == 7233
    assert env.get("TEMPORAL_NAMESPACE", "default") == "default"


@pytest.mark.parametrize("name", RUNRECORD_SERVICES)
def test_database_url_points_at_records_db(compose: dict[str, Any], name: str) -> None:
    url = make_url(_environment(_service(compose, name))["RUNRECORD_DATABASE_URL"])
    db_env = _environment(_service(compose, "records-db"))
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "records-db"
    assert (url.port or 5432) == 5432  # the container port, not the host's 5433
    assert url.database == db_env["POSTGRES_DB"]
    assert url.username == db_env["POSTGRES_USER"]
    assert url.password == db_env["POSTGRES_PASSWORD"]


def test_runrecord_services_share_one_records_database(compose: dict[str, Any]) -> None:
    urls = {
        name: _environment(service).get("RUNRECORD_DATABASE_URL")
        for name, service in compose["services"].items()
        if name.startswith("runrecord-")
    }
    assert len(set(urls.values())) == 1, urls


@pytest.mark.parametrize(
    ("name", "dependency", "condition"),
    [
        ("temporal-schema", "postgresql", "service_healthy"),
        ("temporal", "temporal-schema", "service_completed_successfully"),
        ("temporal-namespace", "temporal", "service_healthy"),
        ("runrecord-migrate", "records-db", "service_healthy"),
        ("runrecord-worker", "temporal-namespace", "service_completed_successfully"),
        ("runrecord-worker", "runrecord-migrate", "service_completed_successfully"),
        ("runrecord-mirror", "temporal-namespace", "service_completed_successfully"),
        ("runrecord-mirror", "runrecord-migrate", "service_completed_successfully"),
    ],
)
def test_start_order(
    compose: dict[str, Any], name: str, dependency: str, condition: str | None
) -> None:
    deps = _depends_on(_service(compose, name))
    assert dependency in deps, f"{name} must depend on {dependency}"
    if condition is not None:
        assert deps[dependency] == condition


def test_dependencies_are_satisfiable(compose: dict[str, Any]) -> None:
    # `docker compose up` refuses a dependency on a missing service and waits
    # forever on `service_healthy` for a service without a healthcheck.
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (
                    f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
                )


@pytest.mark.parametrize("name", ["runrecord-migrate", "temporal-schema", "temporal-namespace"])
def test_setup_jobs_run_once(compose: dict[str, Any], name: str) -> None:
    # Must be the string "no": a bare `no` in YAML is the boolean false.
    assert _service(compose, name).get("restart", "no") == "no"


def test_temporal_server_supports_workflow_pause(compose: dict[str, Any]) -> None:
    image = _service(compose, "temporal")["image"]
    assert _release(image) >= WORKFLOW_PAUSE_SERVER, (
        f"Workflow Pause needs Temporal Server {'.'.join(map(str, WORKFLOW_PAUSE_SERVER))}+, "
        f"got {image!r}"
    )


@pytest.mark.parametrize("name", ["temporal-schema", "temporal-namespace"])
def test_admin_tools_match_the_server_release(compose: dict[str, Any], name: str) -> None:
    # The schema files in admin-tools must be those the server expects.
    server = _service(compose, "temporal")["image"]
    tools = _service(compose, name)["image"]
    assert _release(tools)[:2] == _release(server)[:2], (tools, server)


def test_schema_job_sets_up_the_servers_databases(compose: dict[str, Any]) -> None:
    server = _environment(_service(compose, "temporal"))
    job = _service(compose, "temporal-schema")
    env = _environment(job)
    assert env["SQL_PLUGIN"] == server["DB"] == "postgres12"
    assert env["SQL_HOST"] == server["POSTGRES_SEEDS"]
    assert int(env["SQL_PORT"]) == int(server["DB_PORT"])
    assert env["SQL_USER"] == server["POSTGRES_USER"]
    assert env["SQL_PASSWORD"] == server["POSTGRES_PWD"]

    script = " ".join(_argv(job.get("entrypoint")) + _argv(job.get("command")))
    # The server's default database names, each created and then migrated
    # to the newest versioned schema for its role.
    for database, schema in [("temporal", "temporal"), ("temporal_visibility", "visibility")]:
        for step in ("create", "setup-schema", "update-schema"):
            assert f"temporal-sql-tool --db {database} {step}" in script, (database, step)
        assert f"--db {database} update-schema -d ./{schema}/versioned" in script, schema
    assert "cd /etc/temporal/schema/postgresql/v12\n" in script


def test_namespace_job_creates_the_runrecord_namespace(compose: dict[str, Any]) -> None:
    job = _service(compose, "temporal-namespace")
    env = _environment(job)
    worker = _environment(_service(compose, "runrecord-worker"))
    assert env["TEMPORAL_ADDRESS"] == worker["TEMPORAL_ADDRESS"]
    assert env["TEMPORAL_NAMESPACE"] == worker.get("TEMPORAL_NAMESPACE", "default")
    script = " ".join(_argv(job.get("entrypoint")) + _argv(job.get("command")))
    assert "temporal operator namespace create" in script


@pytest.mark.parametrize("name", TEMPORAL_CLIENTS)
def test_temporal_clients_wait_for_the_namespace(compose: dict[str, Any], name: str) -> None:
    # The worker registers search attributes in it at start; both list and
    # read its workflows. Neither can do so before it exists.
    deps = _depends_on(_service(compose, name))
    assert deps.get("temporal-namespace") == "service_completed_successfully"


def test_databases_keep_data_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("postgresql", "records-db"):
        sources = {
            source
            for source, target in _volume_mounts(_service(compose, name))
            if target == "/var/lib/postgresql/data"
        }
        assert sources & declared, f"{name} must keep its data in a named volume"


def test_workers_scale_out_and_a_separate_mirror_shares_no_volume_with_them(
    compose: dict[str, Any],
) -> None:
    worker = _service(compose, "runrecord-worker")
    mirror = _service(compose, "runrecord-mirror")
    # Workers ship their own attempts and artifacts; the mirror runs apart, always on.
    assert _argv(worker.get("command"))[:2] == ["runrecord", "worker"]
    assert "--no-mirror" in _argv(worker.get("command"))
    assert _argv(mirror.get("command")) == ["runrecord", "mirror", "run"]
    assert not mirror.get("profiles"), "the mirror must start with `docker compose up`"
    # `--scale` needs replicas that differ in nothing fixed.
    assert "container_name" not in worker and not _published_ports(worker)
    assert "container_name" not in mirror and not _published_ports(mirror)
    # Workers and the mirror may sit on different machines: nothing on disk in common.
    worker_sources = {source for source, _ in _volume_mounts(worker)}
    mirror_sources = {source for source, _ in _volume_mounts(mirror)}
    assert not worker_sources & mirror_sources
    assert "volumes_from" not in mirror and "volumes_from" not in worker
    # A replaced worker's spool survives it, for the next replica to ship.
    assert (worker_sources & set(compose.get("volumes") or {})) and any(
        target == _environment_home(worker) for _, target in _volume_mounts(worker)
    )


def _environment_home(service: dict[str, Any]) -> str:
    """RUNRECORD_HOME as the container sees it: the service's, else the Dockerfile's."""
    home = _environment(service).get("RUNRECORD_HOME")
    if home:
        return home
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"\s*ENV\s+RUNRECORD_HOME[=\s]+(\S+)", line)
        if match:
            return match.group(1)
    return "/home/runrecord/.runrecord"


def test_temporal_dynamic_config_enables_workflow_pause(compose: dict[str, Any]) -> None:
    temporal = _service(compose, "temporal")
    config_path = PurePosixPath(
        "/etc/temporal", _environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    )  # relative paths are resolved against the image's working directory
    host_file = None
    for source, target in _volume_mounts(temporal):
        target_path = PurePosixPath(target)
        if config_path == target_path or target_path in config_path.parents:
            relative = config_path.relative_to(target_path)
            host_file = (COMPOSE_FILE.parent / source / relative).resolve()
    assert host_file is not None, f"nothing is mounted at {config_path}"
    assert host_file.is_file(), f"{host_file} is mounted into temporal but missing"
    assert REPO in host_file.parents

    config = yaml.safe_load(host_file.read_text())
    for key, entries in config.items():
        # Temporal's format: each key holds a list of {value, constraints?}.
        assert isinstance(entries, list) and entries, key
        for entry in entries:
            assert "value" in entry and set(entry) <= {"value", "constraints"}, key
    assert [e["value"] for e in config["frontend.WorkflowPauseEnabled"]] == [True]


# -- the CLI the compose file and the Dockerfile call ------------------------


@pytest.mark.parametrize(
    "where,argv",
    _runrecord_commands(_load_compose()),
    ids=[where for where, _ in _runrecord_commands(_load_compose())],
)
def test_compose_commands_exist_in_cli(where: str, argv: list[str]) -> None:
    resolve_cli_command(argv)


def test_compose_names_the_expected_commands() -> None:
    commands = {" ".join(argv) for _, argv in _runrecord_commands(_load_compose())}
    assert {"runrecord db upgrade", "runrecord worker --no-mirror", "runrecord mirror run"} <= (
        commands
    )


def test_dockerfile_cmd_exists_in_cli() -> None:
    resolve_cli_command(_dockerfile_cmd())
