"""deploy/k8s/: strictly schema-valid (kubernetes-validate, offline), and saying what the README promises:
the training Job only trains when the volume holds no model, the API reads it read-only, drains before it is
killed, is probed on /health (ready) and /ping (alive), runs as non-root, and the Service, autoscaler and
disruption budget all point at the API's pods."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes release still in wide use, and the newest the validator ships schemas for.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
API_LABELS = {"app.kubernetes.io/name": "novel-lstm", "app.kubernetes.io/component": "api"}


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found.append((path.name, document))
    return found


def by_kind(kind: str) -> dict:
    matches = [document for _, document in documents() if document["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind} in deploy/k8s/, found {len(matches)}"
    return matches[0]


def test_every_resource_the_readme_lists_is_there() -> None:
    kinds = sorted(document["kind"] for _, document in documents())
    assert kinds == sorted(
        [
            "PersistentVolumeClaim",
            "Job",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        ]
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("name", "document"), documents(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_manifest_is_strictly_valid(name: str, document: dict, version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["spec", "template", "spec", "terminationGracePeriodSecond"], 45, "Additional properties"),
        (["spec", "replicas"], "two", "is not of type"),
        (["spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "port"], None, "None"),
    ],
)
def test_a_typo_fails_strict_validation(path: list, value: object, expected: str) -> None:
    """The validator really checks (offline, from its own schemas): a misspelt key or a wrong type fails."""
    deployment = yaml.safe_load((K8S / "api-deployment.yaml").read_text(encoding="utf-8"))
    target = deployment
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError) as error:
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    assert expected in str(error.value)


def api_pod() -> dict:
    return by_kind("Deployment")["spec"]["template"]["spec"]


def api_container() -> dict:
    containers = api_pod()["containers"]
    assert len(containers) == 1
    return containers[0]


def test_api_is_killed_only_after_the_pre_stop_pause_and_the_drain() -> None:
    pod, container = api_pod(), api_container()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pause >= 3, "endpoints and proxies need a few seconds to stop routing to the pod"
    environment = {item["name"]: item["value"] for item in container["env"]}
    drain = float(environment["DRAIN_TIMEOUT"])
    assert drain == Settings(_env_file=None).drain_timeout
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_api_probes_ready_on_health_and_alive_on_ping() -> None:
    container = api_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert container["startupProbe"]["httpGet"]["path"] == "/ping"
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]


def test_api_reads_the_models_volume_read_only_and_runs_as_non_root() -> None:
    pod, container = api_pod(), api_container()
    models = next(volume for volume in pod["volumes"] if volume["name"] == "models")
    claim = by_kind("PersistentVolumeClaim")["metadata"]["name"]
    assert models["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    environment = {item["name"]: item["value"] for item in container["env"]}
    assert environment["MODEL_DIR"].startswith("/models/")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's `novel` user
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The root filesystem is read-only; /tmp (jieba's cache) is a writable emptyDir.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_api_resources_cover_one_worker() -> None:
    container = api_container()
    environment = {item["name"]: item["value"] for item in container["env"]}
    assert environment["WORKERS"] == "1"
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    mebibytes = {"Mi": 1, "Gi": 1024}

    def to_mib(quantity: str) -> float:
        return float(quantity[:-2]) * mebibytes[quantity[-2:]]

    # README, Speed: 229 MB resident per worker with the default model (benchmarks/load.py).
    assert to_mib(requests["memory"]) >= 229e6 / 2**20
    assert to_mib(limits["memory"]) > to_mib(requests["memory"])
    assert "cpu" in requests and "cpu" not in limits


def test_training_job_trains_only_into_an_empty_volume_like_the_compose_trainer() -> None:
    job = by_kind("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["command"][-1]
    compose = yaml.safe_load((K8S.parents[1] / "docker-compose.yml").read_text(encoding="utf-8"))
    compose_script = compose["services"]["trainer"]["command"][-1].replace("$$", "$")
    assert container["command"][:2] == ["sh", "-c"]
    # The same test and the same training command as docker-compose.yml's trainer (only the message differs).
    assert script.split(";")[0] == compose_script.split(";")[0]
    assert script.split("else")[1] == compose_script.split("else")[1]
    assert pod["restartPolicy"] == "Never"
    models = next(volume for volume in pod["volumes"] if volume["name"] == "models")
    assert (
        models["persistentVolumeClaim"]["claimName"] == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    )
    assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]  # writable here
    assert pod["securityContext"]["runAsNonRoot"] is True
    environment = {item["name"]: item["value"] for item in container["env"]}
    deployment_environment = {item["name"]: item["value"] for item in api_container()["env"]}
    assert deployment_environment["MODEL_DIR"] == f"/models/{environment['MODEL_NAME']}"


def test_service_autoscaler_and_disruption_budget_point_at_the_api_pods() -> None:
    deployment = by_kind("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == API_LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"] == API_LABELS
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = by_kind("Service")
    assert service["spec"]["selector"] == API_LABELS
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    autoscaler = by_kind("HorizontalPodAutoscaler")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
    budget = by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == API_LABELS
    assert budget["spec"]["maxUnavailable"] == 1
