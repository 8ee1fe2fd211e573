"""deploy/k8s: every manifest valid against the Kubernetes schemas (strict: unknown fields fail), and
every role wired the way the issue asks: probes, resources, secrets from a Secret, replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tests.deploy.conftest import DEPLOY, lore_accepts, run, settings_from_env, tool

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
VERSIONS = ["1.29.0", "1.37.0"]  # the oldest version still common, and the newest schema bundled


def docs() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs() if d["kind"] == kind}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_does_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "web.yaml"
    broken.write_text((K8S / "web.yaml").read_text().replace("  replicas: 2", "  replicass: 2", 1))
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", str(broken))
    assert result.returncode != 0 and "replicass" in result.stdout + result.stderr


def test_the_kustomization_lists_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    assert [i["name"] for i in kustomization["images"]] == ["lore"]


def lore_deployments() -> dict[str, dict[str, Any]]:
    found = {}
    for name, d in by_name("Deployment").items():
        [container] = d["spec"]["template"]["spec"]["containers"]
        if container["image"] == "lore":
            found[name] = d
    return found


def test_every_role_has_a_deployment_and_the_engines_have_state() -> None:
    assert set(lore_deployments()) == {
        "lore-web",
        "lore-slack",
        "lore-discord",
        "lore-worker-ingest",
        "lore-worker-feedback",
        "lore-beat",
    }
    assert set(by_name("StatefulSet")) == {"qdrant", "redis", "postgres"}
    for sts in by_name("StatefulSet").values():
        assert sts["spec"]["volumeClaimTemplates"]
    [redis] = by_name("StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"]
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"
    assert set(by_name("Service")) == {"lore-web", "qdrant", "redis", "postgres"}


@pytest.mark.parametrize("name", sorted(lore_deployments()))
def test_each_role_has_probes_resources_secrets_and_a_real_command(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d = lore_deployments()[name]
    pod = d["spec"]["template"]["spec"]
    [c] = pod["containers"]
    lore_accepts(c["args"])
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
        c["resources"]["limits"]
    )
    refs = [next(iter(e.values()))["name"] for e in c["envFrom"]]
    assert refs == ["lore-env", "lore-secrets"] and "secretRef" in c["envFrom"][1]
    env = {**by_name("ConfigMap")["lore-env"]["data"], **{e["name"]: e["value"] for e in c.get("env", [])}}
    settings = settings_from_env(env, monkeypatch, tmp_path)
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if name == "lore-beat":
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
        return
    probe_ports = {c[p]["httpGet"]["port"] for p in ("livenessProbe",)}
    assert len(probe_ports) == 1
    port = ports[probe_ports.pop()]
    if name == "lore-web":
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and port == 8000
    elif name in ("lore-slack", "lore-discord"):
        assert port == settings.web.ops_port and c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    else:
        assert port == settings.worker.metrics_port and c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    if name == "lore-worker-ingest":
        assert d["spec"]["replicas"] >= 2  # scaled by replicas
    if name == "lore-discord":
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"


def test_the_secret_holds_every_secret_setting_and_the_configmap_loads(tmp_path: Path) -> None:
    from config.loader import load_settings
    from config.settings import Settings

    def secrets(model: Any, prefix: str = "LORE_") -> set[str]:
        found = set()
        for field_name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                found |= secrets(ann, f"{prefix}{field_name.upper()}__")
            elif ann is SecretStr or SecretStr in getattr(ann, "__args__", ()):
                found.add(f"{prefix}{field_name.upper()}")
        return found

    data = by_name("Secret")["lore-secrets"]["stringData"]
    assert secrets(Settings) <= set(data), secrets(Settings) - set(data)
    assert all(not v or "CHANGE-ME" in v for v in data.values())  # placeholders only
    config = by_name("ConfigMap")["lore-config"]["data"]["lore.toml"]
    path = tmp_path / "lore.toml"
    path.write_text(config)
    assert [s.name for s in load_settings(path).sources] == ["handbook"]


def test_the_web_role_behind_the_ingress_trusts_only_its_forwarded_for(monkeypatch) -> None:
    """The env ConfigMap's settings load as the pods get them: secure cookies, and X-Forwarded-For
    believed from the ingress's network (else every client would share the ingress's budget)."""
    from config.settings import Settings

    env = by_name("ConfigMap")["lore-env"]["data"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    web = Settings().web
    assert web.secure_cookies is True
    assert web.trusted_proxies == ["10.0.0.0/8"]
