"""The model workload: security, probes, rollout, placement, networking, autoscaling.

The committed stacks run the pods with an Argo Rollout (canary releases); `modelService.canary.enabled:
false` with a Deployment. Both hold the same pod template (tests/infra/test_release.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from infra.settings import PROJECT_DIR
from infra.settings.artifact import APP_DIR
from review.records import Synthesis
from tests.support.scheduling import pod_spec, pool_nodes, pools_for
from tests.support.stacks import CPU_ONLY, synthesized, synthesized_with


def kind(synthesis: Synthesis, name: str) -> dict[str, Any]:
    """The model workload's one object of a kind (its namespace, for the Namespace itself)."""
    if name == "Namespace":
        return synthesis.object("Namespace", "model-serving").inputs
    (record,) = synthesis.objects(name, namespace="model-serving")
    return record.inputs


def workload(synthesis: Synthesis) -> dict[str, Any]:
    """What runs the model's pods: the Rollout, or the Deployment when canaries are off."""
    (record,) = [r for name in ("Rollout", "Deployment") for r in synthesis.objects(name, namespace="model-serving")]
    return record.inputs


def without_canaries(stack: str) -> Synthesis:
    """The stack with `modelService.canary.enabled: false` (an override replaces the whole key, so the
    stack file's other model settings are carried over)."""
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    model = dict(config.get("model-serving:modelService") or {})
    return synthesized_with(stack, {"modelService": {**model, "canary": {**model.get("canary", {}), "enabled": False}}})


def pod(synthesis: Synthesis) -> dict[str, Any]:
    return workload(synthesis)["spec"]["template"]["spec"]


def container(synthesis: Synthesis) -> dict[str, Any]:
    (server,) = pod(synthesis)["containers"]
    return server


def environment(synthesis: Synthesis) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(synthesis)["env"]}


def test_pod_security_standards_restricted(stack_synthesis: Synthesis) -> None:
    spec, server = pod(stack_synthesis), container(stack_synthesis)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = server["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(v.get("hostPath") for v in spec["volumes"])
    assert "hostNetwork" not in spec and "hostPID" not in spec
    namespace = kind(stack_synthesis, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_tmp_is_an_empty_dir_because_the_root_is_read_only(stack_synthesis: Synthesis) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container(stack_synthesis)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(stack_synthesis)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    claim = volumes[mounts["/var/log/predictions"]]["persistentVolumeClaim"]["claimName"]
    assert claim == kind(stack_synthesis, "PersistentVolumeClaim")["metadata"]["name"]


def test_probes_hit_the_servers_health_endpoints(stack_synthesis: Synthesis) -> None:
    server = container(stack_synthesis)
    assert server["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_rolling_update_never_drops_below_the_desired_count(stack_synthesis: Synthesis) -> None:
    """A canary's pods come beside a stable revision that stays fully scaled; with canaries off, a
    new pod must be ready before an old one goes."""
    assert kind(stack_synthesis, "Rollout")["spec"]["strategy"]["canary"]["dynamicStableScale"] is False
    strategy = kind(without_canaries(stack_synthesis.stack), "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_shutdown_outlasts_load_balancer_deregistration(stack_synthesis: Synthesis) -> None:
    spec, server = pod(stack_synthesis), container(stack_synthesis)
    pause = server["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain, finish = int(environment(stack_synthesis)["MODEL_DRAIN_S"]), int(
        environment(stack_synthesis)["MODEL_SHUTDOWN_TIMEOUT_S"])
    assert pause >= 15
    assert spec["terminationGracePeriodSeconds"] > pause + drain + finish
    annotations = kind(stack_synthesis, "Ingress")["metadata"]["annotations"]
    assert "deregistration_delay.timeout_seconds=30" in annotations[
        "alb.ingress.kubernetes.io/target-group-attributes"]
    assert kind(stack_synthesis, "Namespace")["metadata"]["labels"][
        "elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_resources_and_environment_come_from_config() -> None:
    prod = synthesized("prod")
    assert container(prod)["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"},
                                            "limits": {"cpu": "2", "memory": "2Gi"}}
    env = environment(prod)
    assert env["MODEL_SHA256"] == (APP_DIR / "model.pkl.sha256").read_text().split()[0]
    assert env["MODEL_NAME"] == "iris" and env["MODEL_VERSION"] == "1"
    assert env["MODEL_WORKERS"] == "2"  # one per whole CPU of the limit
    assert env["MODEL_PREDICTION_LOG_DIR"] == "/var/log/predictions"
    assert environment(synthesized("dev"))["MODEL_PREDICTION_LOG_SAMPLE_RATE"] == "0.1"


def test_image_is_pulled_by_digest(stack_synthesis: Synthesis) -> None:
    image = container(stack_synthesis)["image"]
    assert "@sha256:" in image
    assert image == stack_synthesis.outputs["imageRef"]
    assert image.startswith(stack_synthesis.outputs["ecrRepositoryUrl"] + "@")


def test_replicas_from_config_then_owned_by_the_autoscaler() -> None:
    prod = synthesized("prod")
    # The Rollout never declares a count: KEDA's autoscaler owns it from the start.
    assert "replicas" not in kind(prod, "Rollout")["spec"]
    scaler = kind(prod, "ScaledObject")
    assert scaler["apiVersion"] == "keda.sh/v1alpha1"
    assert (scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]) == (3, 12)
    assert scaler["spec"]["triggers"][-1] == {"type": "cpu", "name": "cpu", "metricType": "Utilization",
                                              "metadata": {"value": "70"}}
    # A Deployment (canaries off) starts at `replicas`, then leaves the count to the autoscaler.
    deployment = without_canaries("prod").one("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["spec"]["replicas"] == 3
    assert deployment.options["ignoreChanges"] == ["spec.replicas"]


def test_spread_across_zones_and_placed_on_the_configured_pool(stack_synthesis: Synthesis) -> None:
    spec = pod(stack_synthesis)
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys[0] == "topology.kubernetes.io/zone"
    assert spec["nodeSelector"] == {"model-serving/pool": "cpu"}
    assert spec["tolerations"] == []
    assert "nvidia.com/gpu" not in container(stack_synthesis)["resources"]["limits"]


def test_disruption_budget_and_network_policy(stack_synthesis: Synthesis) -> None:
    assert kind(stack_synthesis, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    policy = kind(stack_synthesis, "NetworkPolicy")["spec"]
    vpc_cidr = stack_synthesis.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"from": [{"ipBlock": {"cidr": vpc_cidr}}],
                                  "ports": [{"protocol": "TCP", "port": 8080}]}]
    assert policy["podSelector"] == workload(stack_synthesis)["spec"]["selector"]


def test_ingress_is_an_internet_facing_alb_to_pod_ips(stack_synthesis: Synthesis) -> None:
    ingress = kind(stack_synthesis, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb" == stack_synthesis.outputs["ingressClass"]
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/v2/health/ready"
    # dev and staging serve plain HTTP on the load balancer's name; prod HTTPS on its own domain.
    if stack_synthesis.stack == "prod":
        assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
        assert stack_synthesis.outputs["modelUrl"] == "https://iris.ml.example.com"
    else:
        assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}]
        assert stack_synthesis.outputs["modelUrl"].startswith("http://k8s-")


def test_a_gpu_model_lands_on_the_gpu_pool_with_its_toleration_and_limit() -> None:
    synthesis = synthesized_with("dev", {"modelService": {
        "model": "examples/onnx-mlp/model.onnx", "pool": "gpu", "gpus": 1, "replicas": 1, "minReplicas": 1,
        "maxReplicas": 1}})
    spec = pod(synthesis)
    assert spec["nodeSelector"] == {"model-serving/pool": "gpu"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container(synthesis)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # ...and the pool it asks for can produce such a node from zero (a NodePool starts empty).
    gpu_pool = synthesis.object("NodePool", "gpu").inputs["spec"]
    assert gpu_pool["template"]["metadata"]["labels"]["model-serving/pool"] == "gpu"
    assert {t["key"] for t in gpu_pool["template"]["spec"]["taints"]} == {"nvidia.com/gpu"}
    assert int(gpu_pool["limits"]["nvidia.com/gpu"]) >= 1
    # ...whose GPUs the device plugin advertises: it runs on that pool's nodes, and only there.
    plugin = synthesis.one("kubernetes:apps/v1:DaemonSet", "gpu-device-plugin").inputs
    assert pools_for(pod_spec(plugin) or {}, pool_nodes(synthesis)) == {"gpu"}


def test_a_cpu_only_stack_has_no_gpu_pool_no_device_plugin_and_no_gpu_requests() -> None:
    synthesis = synthesized_with("dev", CPU_ONLY)
    assert not synthesis.of_type("kubernetes:apps/v1:DaemonSet")
    assert all(g.inputs["amiType"] == "AL2023_x86_64_STANDARD"
               for g in synthesis.of_type("aws:eks/nodeGroup:NodeGroup"))
    assert "nvidia.com/gpu" not in container(synthesis)["resources"]["limits"]


@pytest.mark.parametrize(("stack", "retained"), [("dev", False), ("prod", True)])
def test_prediction_log_claim_is_shared_and_retained_unless_configured(stack: str, retained: bool) -> None:
    synthesis = synthesized(stack)
    claim = next(r for r in synthesis.of_type("kubernetes:core/v1:PersistentVolumeClaim"))
    assert claim.inputs["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim.inputs["spec"]["storageClassName"] == "efs-shared"
    assert claim.options["retainOnDelete"] is retained


def test_workload_waits_for_the_ingress_controller_and_storage(stack_synthesis: Synthesis) -> None:
    rollout = stack_synthesis.one("kubernetes:argoproj.io/v1alpha1:Rollout")
    dependencies = rollout.options["dependencies"]
    assert any(d.endswith("Release::aws-load-balancer-controller") for d in dependencies)
    assert any("MountTarget::storage-shared" in d for d in dependencies)

