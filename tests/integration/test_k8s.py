"""deploy/k8s: every kustomization renders, validates against the Kubernetes schemas, and keeps
the invariants the deployment relies on.

Rendered once per module with `kubectl kustomize` (built-in kustomize), validated strictly with
`kubernetes-validate` (unknown fields are errors) for the oldest and newest Kubernetes versions
we support, then checked object by object: every container restricted and with resources, the
API never near the writer's or the owner's secret, the migration Job waited for, the CronJob
forbidding concurrency, network policies that allow only what each role needs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pg import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(
    p.parent.name
    for p in K8S.glob("*/kustomization.yaml")
    if p.parent.name not in ("base", "components")
)
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest still supported by the big clouds; newest
POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
MIGRATE_SECRET, WRITER_SECRET, READER_SECRET = (
    "cryptoetl-migrate-db",
    "cryptoetl-writer-db",
    "cryptoetl-reader-db",
)
UPSTREAM_SECRET = "cryptoetl-upstream"
DNS_PORT = 53


@cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (it renders the kustomizations)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: {kind}/{name} x{len(found)}"
    return found[0]


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def pods(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every object that runs pods."""
    for obj in render(overlay):
        if obj["kind"] in POD_OWNERS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", pod_template(obj)


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def secrets_used(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod can read: env, envFrom and volumes (projected included)."""
    names: set[str] = set()
    for container in containers(pod):
        for env in container.get("env", []):
            if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if ref := source.get("secretRef"):
                names.add(ref["name"])
    for volume in pod["spec"].get("volumes", []):
        if secret := volume.get("secret"):
            names.add(secret["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if secret := source.get("secret"):
                names.add(secret["name"])
    return names


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # the only form these manifests use
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def component(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"]["app.kubernetes.io/component"])


# --------------------------------------------------------------------------- render + schemas


def test_the_overlays_exist() -> None:
    assert {"dev", "production", "production-cronjob"} <= set(OVERLAYS)


@pytest.mark.parametrize("directory", ["base", *OVERLAYS])
def test_renders(directory: str) -> None:
    assert render(directory)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_validates_strictly_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev dependency) missing"
    )
    errors = []
    for obj in render(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_restricted_and_bounded(overlay: str) -> None:
    for name, pod in pods(overlay):
        spec = pod["spec"]
        pod_security = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("enableServiceLinks") is False, name
        assert "hostNetwork" not in spec, name
        assert "hostPID" not in spec, name
        writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        assert {v["name"] for v in spec.get("volumes", [])} == writable, f"{name}: emptyDir only"
        for container in containers(pod):
            where = f"{overlay} {name} {container['name']}"
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities") == {"drop": ["ALL"]}, where
            assert security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert set(resources.get(bound, {})) >= {"cpu", "memory"}, f"{where}: {bound}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in writable, where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{where}: {image}"
            assert not image.endswith(":latest"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_reads_only_its_own_secrets(overlay: str) -> None:
    allowed = {
        "api": {READER_SECRET},
        "worker": {WRITER_SECRET, UPSTREAM_SECRET},
        "migrate": {MIGRATE_SECRET},
        "stub": set(),
    }
    for name, pod in pods(overlay):
        used = secrets_used(pod)
        assert used <= allowed[component(pod)], f"{overlay} {name}: {used}"
        if component(pod) == "api":
            assert used == {READER_SECRET}, name
            env_names = {e["name"] for c in containers(pod) for e in c.get("env", [])}
            assert "DATABASE_URL" not in env_names, "the API could fall back to another login"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_in_the_manifests(overlay: str) -> None:
    assert not objects(overlay, "Secret"), "Secrets are created per cluster (docs/deploy.md)"
    for config in objects(overlay, "ConfigMap"):
        for key in config.get("data", {}):
            assert not any(word in key for word in ("DATABASE_URL", "PASSWORD", "API_KEY")), key
    for name, pod in pods(overlay):
        for container in containers(pod):
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("DATABASE_URL", "PASSWORD", "API_KEY")):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name} {env['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_and_the_api_wait_for_the_migration_job(overlay: str) -> None:
    job = one(overlay, "Job", "cryptoetl-migrate")
    (migrate,) = pod_template(job)["spec"]["containers"]
    assert migrate["args"][0] == "migrate"
    assert "--wait" in migrate["args"]
    assert pod_template(job)["spec"]["restartPolicy"] == "Never"
    images = {c["image"] for _, pod in pods(overlay) for c in containers(pod)}
    assert len(images) == 1, f"one image for every role: {images}"
    for name, pod in pods(overlay):
        if component(pod) in ("api", "worker"):
            waits = [
                c
                for c in pod["spec"].get("initContainers", [])
                if c["args"][0] == "wait-for-schema"
            ]
            assert waits, f"{name} does not wait for the migration"


def test_production_overlays_deploy_one_image() -> None:
    def images(overlay: str) -> set[str]:
        return {c["image"] for _, pod in pods(overlay) for c in containers(pod)}

    assert images("production") == images("production-cronjob")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_check_what_each_process_really_does(overlay: str) -> None:
    for name, pod in pods(overlay):
        main = pod["spec"]["containers"][0]
        if component(pod) == "api":
            assert main["readinessProbe"]["httpGet"]["path"] == "/health", name
            # A database outage makes pods unready, never restarts them all.
            assert main["livenessProbe"]["httpGet"]["path"] != "/health", name
        elif name.startswith("Deployment/") and component(pod) == "worker":
            check = ["cryptoetl", "worker", "--check"]
            assert main["livenessProbe"]["exec"]["command"] == check, name
            assert main["readinessProbe"]["exec"]["command"] == check, name
        elif component(pod) == "stub":
            assert main["readinessProbe"]["httpGet"]["path"] == "/", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_service_autoscaler_budget_and_scrape_annotations(overlay: str) -> None:
    deployment = one(overlay, "Deployment", "cryptoetl-api")
    pod = pod_template(deployment)
    labels = pod["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    (api,) = pod["spec"]["containers"]
    assert api["args"] == ["api"]
    port = next(p for p in api["ports"] if p["name"] == "http")["containerPort"]

    service = one(overlay, "Service", "cryptoetl-api")
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = one(overlay, "HorizontalPodAutoscaler", "cryptoetl-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cryptoetl-api",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(overlay, "PodDisruptionBudget", "cryptoetl-api")
    assert selects(pdb["spec"]["selector"], labels)

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    config = objects(overlay, "ConfigMap")[0]["data"]
    assert config["API_HOST"] == "0.0.0.0"
    assert config["API_PORT"] == str(port)


def test_daemon_or_cronjob() -> None:
    for overlay in ("dev", "production"):
        assert one(overlay, "Deployment", "cryptoetl-worker")
        assert not objects(overlay, "CronJob")
    assert one("production", "Deployment", "cryptoetl-worker")["spec"]["replicas"] >= 2

    assert not [
        d
        for d in objects("production-cronjob", "Deployment")
        if component(pod_template(d)) == "worker"
    ]
    (cronjob,) = objects("production-cronjob", "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    (worker,) = job["template"]["spec"]["containers"]
    assert worker["args"] == ["worker", "--once"]
    assert job["activeDeadlineSeconds"] < 600, "a pass ends before the next one is due"


# --------------------------------------------------------------------------- network


def _policies_for(overlay: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        p for p in objects(overlay, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]


def _egress_ports(policies: list[dict[str, Any]]) -> set[int]:
    return {
        port["port"]
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def _ingress_ports(policies: list[dict[str, Any]]) -> set[int]:
    return {
        port["port"]
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_what_each_role_needs(overlay: str) -> None:
    expected_egress = {
        "api": {DNS_PORT, 5432},
        "migrate": {DNS_PORT, 5432},
        "worker": {DNS_PORT, 5432, 443} | ({8900} if overlay == "dev" else set()),
        "stub": {DNS_PORT},
    }
    expected_ingress = {"api": {8000}, "migrate": set(), "worker": set(), "stub": {8900}}
    for name, pod in pods(overlay):
        labels = pod["metadata"]["labels"]
        policies = _policies_for(overlay, labels)
        kinds = {t for p in policies for t in p["spec"]["policyTypes"]}
        assert kinds == {"Ingress", "Egress"}, f"{name}: default deny both ways"
        for policy in policies:
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports"
        assert _egress_ports(policies) == expected_egress[component(pod)], name
        assert _ingress_ports(policies) == expected_ingress[component(pod)], name

    worker_labels = pod_template(one(overlay, "Job", "cryptoetl-migrate"))["metadata"]["labels"]
    worker_labels = {**worker_labels, "app.kubernetes.io/component": "worker"}
    https = [
        rule
        for policy in _policies_for(overlay, worker_labels)
        for rule in policy["spec"].get("egress", [])
        if any(p["port"] == 443 for p in rule["ports"])
    ]
    (rule,) = https
    (block,) = rule["to"]
    assert "169.254.0.0/16" in block["ipBlock"]["except"], "never the cloud metadata service"


def test_production_narrows_postgresql_to_the_database_address() -> None:
    for policy in objects("production", "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            if any(p["port"] == 5432 for p in rule["ports"]):
                assert rule.get("to"), policy["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_in_the_overlay_namespace(overlay: str) -> None:
    (namespace,) = objects(overlay, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in render(overlay):
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace["metadata"]["name"], obj["kind"]
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "cryptoetl", obj["metadata"]["name"]


def test_kustomize_files_are_all_used() -> None:
    """Every manifest file in deploy/k8s is part of some kustomization (no stale copies)."""
    listed: set[Path] = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for entry in doc.get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                listed.add(path)
    manifests = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests == listed, manifests ^ listed
