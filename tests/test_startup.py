"""`import runrecord` and the `runrecord` command start fast: each loads only what it uses.

What these check is which libraries a process loads, not how long it takes (the figures are
in benchmarks/startup.py): a query command never loads temporalio or mcp, a command that
talks to Temporal never loads SQLAlchemy or mcp, and the public names still resolve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runrecord.recorder import open_engine
from runrecord.recorder._database import MIGRATIONS, head_revision, known_revisions

HEAVY = ("temporalio", "mcp", "sqlalchemy", "alembic", "detect_secrets", "rich")


def _loaded_by(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The heavy libraries a fresh interpreter has loaded after running ``code``."""
    probe = (
        "import sys, json, os\n"
        f"{code}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}


def _command(*args: str) -> str:
    """Python that runs the `runrecord` command with ``args`` and keeps the process alive."""
    return (
        "from runrecord.cli import main\n"
        f"code = main({list(args)!r})\n"
        "sys.stderr.write(f'exit {code}\\n')\n"
    )


def test_import_runrecord_loads_no_heavy_library() -> None:
    assert _loaded_by("import runrecord") == set()


def test_every_public_name_resolves_to_the_object_its_module_defines() -> None:
    import runrecord.activities
    import runrecord.records
    import runrecord.worker
    import runrecord.workflows

    assert set(runrecord.__all__) == set(runrecord._EXPORTS)
    for name, module in runrecord._EXPORTS.items():
        assert getattr(runrecord, name) is getattr(sys.modules[module], name), name
        assert name in dir(runrecord)
    for package in (runrecord.activities, runrecord.worker, runrecord.workflows):
        assert set(package.__all__) == set(package._EXPORTS), package.__name__
        for name in package.__all__:
            assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Agent'"):
        runrecord.Agent  # noqa: B018
    with pytest.raises(ImportError):
        exec("from runrecord import NoSuchName")


def test_help_loads_neither_temporal_nor_the_database_libraries() -> None:
    loaded = _loaded_by(_command("--help"))
    assert not loaded & {"temporalio", "mcp", "sqlalchemy", "alembic", "detect_secrets"}


@pytest.mark.parametrize(
    "args", [("runs", "--json"), ("show", "run-1", "--json"), ("cost", "--json")], ids=" ".join
)
def test_a_query_command_loads_no_temporal_mcp_or_alembic(
    database_url: str, engine: object, tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {**_clean_env(), "RUNRECORD_DATABASE_URL": database_url, "RUNRECORD_HOME": str(tmp_path)}
    loaded = _loaded_by(_command(*args), env)
    assert "sqlalchemy" in loaded
    assert not loaded & {"temporalio", "mcp", "alembic", "detect_secrets", "rich"}


def test_a_command_loads_no_other_commands_module(tmp_path: Path) -> None:
    from runrecord.cli import COMMANDS, GROUPS

    env = {**_clean_env(), "RUNRECORD_DATABASE_URL": "sqlite:///" + str(tmp_path / "r.sqlite3")}
    probe = (
        "import sys, json, os\n"
        + _command("runs", "--json")
        + "print(json.dumps(sorted(m for m in sys.modules if m.startswith('runrecord.cli.'))))\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    others = {*COMMANDS.values(), *(module for module, _ in GROUPS.values())}
    assert loaded & others == {COMMANDS["runs"]}


def test_approvals_loads_no_database_or_mcp_library(tmp_path: Path) -> None:
    # Nothing listens on port 1: the command fails to connect, after loading what it needs.
    env = {**_clean_env(), "TEMPORAL_ADDRESS": "127.0.0.1:1", "RUNRECORD_HOME": str(tmp_path)}
    loaded = _loaded_by(_command("approvals", "--json"), env)
    assert "temporalio" in loaded
    assert not loaded & {"mcp", "sqlalchemy", "alembic", "rich"}


def test_the_schema_head_is_alembics_head_and_each_migration_is_named_after_its_revision() -> None:
    """The CLI checks the schema without alembic, by the migration files' names."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert head_revision() == scripts.get_current_head()
    by_file = {Path(s.path).name.partition("_")[0]: s.revision for s in scripts.walk_revisions()}
    assert all(prefix == revision for prefix, revision in by_file.items()), by_file
    assert known_revisions() == sorted(by_file)


def test_a_database_without_a_schema_has_no_revision(database_url: str) -> None:
    from runrecord.recorder import current_revision, require_current
    from runrecord.recorder._database import RunRecordError

    engine = open_engine(database_url)
    try:
        assert current_revision(engine) is None
        with pytest.raises(RunRecordError, match="not current"):
            require_current(engine)
    finally:
        engine.dispose()


def test_redaction_puts_off_requests_until_it_is_used() -> None:
    # detect-secrets imports `requests` only to check found secrets online, which runrecord
    # never asks of it: the import waits for a use, and a use gets the real module.
    probe = (
        "import sys\n"
        "from runrecord._redaction import Redactor\n"
        "assert Redactor().text('ghp_' + 'a' * 36) == '[REDACTED]'\n"
        "assert 'urllib3' not in sys.modules, 'requests was imported'\n"
        "import requests\n"
        "from requests.adapters import HTTPAdapter\n"
        "assert requests.Session and HTTPAdapter and 'urllib3' in sys.modules\n"
        "assert sys.modules['requests'].__version__ == requests.__version__\n"
        "assert type(sys.modules['requests']).__name__ == 'module'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
