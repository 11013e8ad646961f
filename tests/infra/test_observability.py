"""The observability stack as declared and rendered: metrics, alerts, dashboard, logs and access logs,
cross-checked against the rest of the program (the model's pods, the node pools, IAM)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml

from infra.observability.alert_rules import RUNBOOK, rule_groups
from infra.settings import PROJECT_DIR
from review.records import Synthesis
from tests.support.charts import rendered_chart
from tests.support.scheduling import pod_spec, pool_nodes, pools_for, selector_matches
from tests.support.stacks import CPU_ONLY, lookups, synthesized, synthesized_variant, synthesized_with

MONITORING = "monitoring"
CUSTOM = "kubernetes:monitoring.coreos.com/v1"


def custom_resource(synthesis: Synthesis, kind: str) -> dict[str, Any]:
    record = synthesis.one(f"{CUSTOM}:{kind}")
    return record.inputs


def model_workload(synthesis: Synthesis) -> dict[str, Any]:
    """The Rollout that runs the model's pods (the committed stacks release canaries)."""
    return synthesis.object("Rollout", "model-server", namespace="model-serving").inputs


# dev's model settings with canaries off: canary analysis needs the in-cluster Prometheus.
DEV_WITHOUT_OBSERVABILITY = {
    "observability": {"enabled": False},
    "modelService": {**yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())["config"][
        "model-serving:modelService"], "canary": {"enabled": False}}}


# -- on by default, off cleanly ------------------------------------------------------------------------

def test_observability_off_removes_all_of_it() -> None:
    off = synthesized_with("dev", DEV_WITHOUT_OBSERVABILITY)
    on = synthesized("dev")
    names = {r.name for r in off.resources}
    added = {r.type for r in on.resources if r.name not in names}
    assert {"aws:sns/topic:Topic", "aws:s3/bucket:Bucket", "kubernetes:helm.sh/v4:Chart",
            f"{CUSTOM}:PrometheusRule", f"{CUSTOM}:PodMonitor"} <= added
    assert not [r for r in off.resources if r.type.startswith(("aws:sns", "aws:s3", CUSTOM))]
    charts = {r.inputs["chart"] for r in off.of_type("kubernetes:helm.sh/v4:Chart")}
    assert charts == {"oci://public.ecr.aws/karpenter/karpenter-crd", "oci://public.ecr.aws/karpenter/karpenter",
                      "metrics-server", "argo-rollouts", "keda"}
    assert [r.name for r in off.of_type("aws:cloudwatch/logGroup:LogGroup")] == ["cluster-control-plane"]
    ingress = off.one("kubernetes:networking.k8s.io/v1:Ingress").inputs["metadata"]["annotations"]
    assert "access_logs" not in ingress["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert not {"grafanaAdminPassword", "alertTopicArn", "containerLogGroup", "accessLogBucket"} & set(off.outputs)


@pytest.mark.parametrize(("stack", "retention", "storage"), [("dev", "3d", "10Gi"), ("staging", "15d", "50Gi"),
                                                              ("prod", "30d", "100Gi")])
def test_prometheus_keeps_metrics_per_stack_on_an_encrypted_gp3_volume(stack: str, retention: str,
                                                                        storage: str) -> None:
    prometheus = rendered_chart(stack, "kube-prometheus-stack").one("Prometheus")["spec"]
    assert prometheus["retention"] == retention
    claim = prometheus["storage"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == storage
    (storage_class,) = [r.inputs for r in synthesized(stack).of_type("kubernetes:storage.k8s.io/v1:StorageClass")
                        if r.inputs["metadata"]["name"] == claim["storageClassName"]]
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true"}


def test_nothing_of_the_metrics_stack_is_exposed_outside_the_cluster() -> None:
    chart = rendered_chart("prod", "kube-prometheus-stack")
    assert {service["spec"].get("type", "ClusterIP") for service in chart.of_kind("Service")} <= {"ClusterIP"}
    assert chart.of_kind("Ingress") == []


# -- scraping --------------------------------------------------------------------------------------

def test_the_pod_monitor_selects_exactly_the_model_pods_and_their_port(stack_synthesis: Synthesis) -> None:
    monitor = custom_resource(stack_synthesis, "PodMonitor")
    deployment = model_workload(stack_synthesis)
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert selector_matches(monitor["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert monitor["spec"]["selector"] == deployment["spec"]["selector"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    # Prometheus picks up PodMonitors from every namespace, not only the chart's own.
    prometheus = rendered_chart(stack_synthesis.stack, "kube-prometheus-stack").one("Prometheus")["spec"]
    assert prometheus["podMonitorSelector"] == {} and prometheus["podMonitorNamespaceSelector"] == {}
    # The NetworkPolicy admits Prometheus (a pod in the VPC) to that port.
    policy = stack_synthesis.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": container["ports"][0]["containerPort"]}]


@pytest.mark.parametrize(("variant", "chart"), [("prod", "karpenter"),
                                               ("prod-cluster-autoscaler", "cluster-autoscaler")])
def test_the_provisioner_monitor_selects_the_provisioner_service_and_port(variant: str, chart: str) -> None:
    monitor = synthesized_variant(variant).object("ServiceMonitor", chart).inputs
    service = rendered_chart(variant, chart).one("Service")
    # Only the provisioner the stack runs is watched.
    other = "cluster-autoscaler" if chart == "karpenter" else "karpenter"
    assert not [m for m in synthesized_variant(variant).objects("ServiceMonitor") if m.get("metadata", "name") == other]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_gpu_metrics_come_from_gpu_nodes_only() -> None:
    synthesis = synthesized("prod")
    chart = rendered_chart("prod", "dcgm-exporter")
    gpu_pools = {node.pool for node in pool_nodes(synthesis) if "k8s.amazonaws.com/accelerator" in node.labels}
    exporter = chart.one("DaemonSet")
    assert pools_for(pod_spec(exporter) or {}, pool_nodes(synthesis)) == gpu_pools
    # Prometheus scrapes it: the ServiceMonitor selects the exporter's Service, which selects its pods,
    # on a port the Service has and every 15 s (the program's value).
    monitor, service = chart.one("ServiceMonitor")["spec"], chart.one("Service")
    assert service["metadata"]["namespace"] in monitor["namespaceSelector"]["matchNames"]
    assert selector_matches(monitor["selector"], service["metadata"]["labels"])
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, exporter["spec"]["template"]["metadata"][
        "labels"])
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    cpu_only = synthesized_with("dev", CPU_ONLY)
    assert "dcgm-exporter" not in {r.inputs["chart"] for r in cpu_only.of_type("kubernetes:helm.sh/v4:Chart")}


def test_node_level_agents_run_on_every_pool() -> None:
    synthesis = synthesized("dev")
    pools = {node.pool for node in pool_nodes(synthesis)}
    for chart, kind in (("kube-prometheus-stack", "DaemonSet"), ("aws-for-fluent-bit", "DaemonSet")):
        assert pools_for(pod_spec(rendered_chart("dev", chart).one(kind)) or {}, pool_nodes(synthesis)) == pools


# -- alerts -------------------------------------------------------------------------------------------

def alertmanager_config(stack: str) -> dict[str, Any]:
    secret = rendered_chart(stack, "kube-prometheus-stack").one("Secret", "alertmanager-monitoring-alertmanager")
    config: dict[str, Any] = yaml.safe_load(base64.b64decode(secret["data"]["alertmanager.yaml"]))
    return config


def test_alertmanager_sends_to_the_stacks_topic_with_sigv4(stack_synthesis: Synthesis) -> None:
    config = alertmanager_config(stack_synthesis.stack)
    (receiver,) = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    (sns,) = receiver["sns_configs"]
    topic = stack_synthesis.one("aws:sns/topic:Topic").inputs
    assert sns["topic_arn"].endswith(f":{topic['name']}")
    assert sns["sigv4"] == {"region": stack_synthesis.one("pulumi:providers:aws").inputs["region"]}
    assert topic["kmsMasterKeyId"] == "alias/aws/sns"


def test_alertmanagers_identity_may_only_publish_to_that_topic(stack_synthesis: Synthesis) -> None:
    association = stack_synthesis.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "alerting-alertmanager")
    alertmanager = rendered_chart(stack_synthesis.stack, "kube-prometheus-stack").one("Alertmanager")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        MONITORING, alertmanager["spec"]["serviceAccountName"])
    policy = json.loads(stack_synthesis.one("aws:iam/rolePolicy:RolePolicy", "alerting-alertmanager").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["sns:Publish"]
    assert statement["Resource"] == alertmanager_config(stack_synthesis.stack)["receivers"][1]["sns_configs"][0][
        "topic_arn"]


def test_alert_emails_come_from_config() -> None:
    subscriptions = synthesized("prod").of_type("aws:sns/topicSubscription:TopicSubscription")
    assert [(s.inputs["protocol"], s.inputs["endpoint"]) for s in subscriptions] == [("email", "oncall@example.com")]
    assert synthesized("dev").of_type("aws:sns/topicSubscription:TopicSubscription") == []


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^## (.+)$", (PROJECT_DIR / "docs" / "runbook.md").read_text(), re.MULTILINE)
    return {heading.strip().lower() for heading in headings}


def test_every_alert_has_a_runbook_section_in_the_repository(stack_synthesis: Synthesis) -> None:
    groups = custom_resource(stack_synthesis, "PrometheusRule")["spec"]["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    # Every alert of the rules unit-tested in test_alert_rules.py (which names each one), none twice.
    names = [alert["alert"] for alert in alerts]
    assert len(set(names)) == len(names)
    assert set(names) == {rule["alert"] for group in rule_groups(0.25, 0.05, "Rollout", karpenter=True)
                          for rule in group["rules"]}
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK + "#") and url.split("#")[1] in runbook_anchors(), alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_latency_objectives_come_from_config() -> None:
    rules = {rule["alert"]: rule for group in custom_resource(synthesized("prod"), "PrometheusRule")["spec"]["groups"]
             for rule in group["rules"]}
    assert rules["ModelEndpointLatencyHigh"]["expr"].endswith("> 0.2")
    assert rules["ModelQueueWaitHigh"]["expr"].endswith("> 0.05")


# -- dashboards and access ------------------------------------------------------------------------

def test_grafana_uses_a_generated_secret_password_and_loads_the_dashboard() -> None:
    synthesis = synthesized("dev")
    assert synthesis.outputs["grafanaAdminPassword"] == "[secret]"
    secret_record = synthesis.one("kubernetes:core/v1:Secret")
    secret = secret_record.inputs
    # The user and password Grafana reads are keys the Secret has, both secret (never shown)...
    assert secret["stringData"] == {"admin-user": "[secret]", "admin-password": "[secret]"}
    # ...and its data is made from the generated password and nothing else.
    password = synthesis.one("random:index/randomPassword:RandomPassword")
    assert secret_record.property_dependencies["stringData"] == [password.urn]
    assert (password.inputs["length"], password.inputs["special"]) == (32, False)
    admin = rendered_chart("dev", "kube-prometheus-stack").record.inputs["values"]["grafana"]["admin"]
    assert admin["existingSecret"] == secret["metadata"]["name"]
    assert {admin["userKey"], admin["passwordKey"]} == set(secret["stringData"])
    grafana = rendered_chart("dev", "kube-prometheus-stack").one("Deployment", "kube-prometheus-stack-grafana")
    env = {e["name"]: e for c in pod_spec(grafana)["containers"] for e in c.get("env", [])}
    for variable, key in (("GF_SECURITY_ADMIN_USER", admin["userKey"]),
                          ("GF_SECURITY_ADMIN_PASSWORD", admin["passwordKey"])):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
    dashboard = synthesis.one("kubernetes:core/v1:ConfigMap").inputs
    sidecar = next(c for c in pod_spec(grafana)["containers"] if "dashboard" in c["name"])
    label = {e["name"]: e.get("value") for e in sidecar["env"]}["LABEL"]
    assert label in dashboard["metadata"]["labels"]


def test_the_port_forward_commands_in_the_docs_name_real_services() -> None:
    services = {s["metadata"]["name"] for s in rendered_chart("dev", "kube-prometheus-stack").of_kind("Service")}
    for document in (PROJECT_DIR / "README.md", PROJECT_DIR / "docs" / "runbook.md"):
        named = set(re.findall(r"kubectl -n monitoring port-forward svc/([\w-]+)", document.read_text()))
        assert named and named <= services, (document.name, named - services)


# -- logs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stack", "days"), [("dev", 7), ("staging", 30), ("prod", 90)])
def test_container_logs_go_to_the_stacks_group_with_its_retention(stack: str, days: int) -> None:
    synthesis = synthesized(stack)
    group = synthesis.one("aws:cloudwatch/logGroup:LogGroup", "logs-containers").inputs
    assert group["retentionInDays"] == days
    config = rendered_chart(stack, "aws-for-fluent-bit").one("ConfigMap")["data"]
    outputs = config["fluent-bit.conf"]
    assert re.search(rf"log_group_name\s+{re.escape(group['name'])}\n", outputs)
    assert not re.search(r"auto_create_group\s+(true|on)", outputs, re.IGNORECASE)  # the group is ours
    assert re.search(r"Merge_Log\s+On", outputs)  # the server's JSON lines become fields


def test_fluent_bit_may_write_only_to_that_group(stack_synthesis: Synthesis) -> None:
    policy = json.loads(stack_synthesis.one("aws:iam/rolePolicy:RolePolicy", "logs-fluent-bit").inputs["policy"])
    (statement,) = policy["Statement"]
    assert set(statement["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    group = stack_synthesis.one("aws:cloudwatch/logGroup:LogGroup", "logs-containers").inputs["name"]
    assert all(group in resource for resource in statement["Resource"])


# -- load balancer access logs -------------------------------------------------------------------

@pytest.mark.parametrize(("stack", "days"), [("dev", 14), ("staging", 30), ("prod", 365)])
def test_access_logs_bucket_is_private_encrypted_and_expires_them(stack: str, days: int) -> None:
    synthesis = synthesized(stack)
    bucket = synthesis.one("aws:s3/bucket:Bucket")
    blocks = synthesis.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(blocks[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                               "restrictPublicBuckets"))
    encryption = synthesis.one("aws:s3/bucketServerSideEncryptionConfiguration:"
                               "BucketServerSideEncryptionConfiguration").inputs
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    (rule,) = synthesis.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert rule["expiration"] == {"days": days} and rule["status"] == "Enabled"
    assert bucket.options["protect"] is (stack == "prod")


# The account Elastic Load Balancing delivers access logs as, in each stack's region (AWS's table:
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
LOG_DELIVERY_ACCOUNTS = {"dev": "127311923021", "staging": "797873946194", "prod": "156460612806"}


def test_the_load_balancer_log_delivery_may_write_under_the_prefix_only(stack_synthesis: Synthesis) -> None:
    policy = json.loads(stack_synthesis.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (delivery,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"].endswith("/alb/AWSLogs/123456789012/*")
    # The account of the stack's own region: looked up through the stack's provider, which is in it.
    assert delivery["Principal"] == {"AWS": f"arn:aws:iam::{LOG_DELIVERY_ACCOUNTS[stack_synthesis.stack]}:root"}
    provider = stack_synthesis.one("pulumi:providers:aws")
    assert lookups(stack_synthesis, "aws:elb/getServiceAccount:getServiceAccount") == [
        {"args": {}, "provider": provider.name}]
    (tls,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    attributes = stack_synthesis.one("kubernetes:networking.k8s.io/v1:Ingress").inputs["metadata"]["annotations"][
        "alb.ingress.kubernetes.io/load-balancer-attributes"]
    bucket = stack_synthesis.one("aws:s3/bucket:Bucket").inputs["bucket"]
    assert f"access_logs.s3.enabled=true,access_logs.s3.bucket={bucket},access_logs.s3.prefix=alb" in attributes


def test_the_dashboard_is_grafana_json_with_the_panels_operators_need(stack_synthesis: Synthesis) -> None:
    config_map = stack_synthesis.one("kubernetes:core/v1:ConfigMap").inputs
    dashboard = json.loads(config_map["data"]["model-serving.json"])
    assert dashboard["uid"] == "model-serving" and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(set(cells)) == len(cells)  # no two panels on the same spot
    for panel in panels:
        assert panel["type"] == "timeseries" and panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"] and len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    titles = " / ".join(panel["title"] for panel in panels)
    for needed in ("Requests per second", "Errors", "latency", "Queue wait", "Rows per predict call",
                   "in flight", "Replicas", "CPU per pod", "Memory per pod", "runtime and device"):
        assert needed in titles, needed
    # The data source the panels name is the one the chart provisions.
    chart = rendered_chart(stack_synthesis.stack, "kube-prometheus-stack")
    datasources = [c for c in chart.of_kind("ConfigMap") if "datasource.yaml" in (c.get("data") or {})]
    assert datasources and "uid: prometheus" in datasources[0]["data"]["datasource.yaml"]


def test_gpu_panels_show_the_models_own_gpus_only_when_it_runs_on_one() -> None:
    """dcgm-exporter labels each GPU's series with the pod's namespace and container (exported_*
    through its ServiceMonitor): the panels select the model server's; a model on a CPU pool has none."""
    def dashboard(synthesis: Synthesis) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(synthesis.one("kubernetes:core/v1:ConfigMap").inputs["data"][
            "model-serving.json"])
        return loaded

    gpu_panels = [panel for panel in dashboard(synthesized_variant("prod-gpu-https"))["panels"]
                  if "GPU" in panel["title"]]
    assert [panel["title"] for panel in gpu_panels] == ["GPU utilisation", "GPU memory used"]
    for panel in gpu_panels:
        assert 'exported_namespace="model-serving",exported_container="model-server"' in panel["targets"][0]["expr"]
    for on_cpu in (synthesized_variant("prod"), synthesized_with("dev", CPU_ONLY)):
        assert not [panel for panel in dashboard(on_cpu)["panels"] if "GPU" in panel["title"]]
    (devices,) = [panel for panel in dashboard(synthesized_variant("prod"))["panels"] if "device" in panel["title"]]
    assert devices["targets"][0]["expr"] == (
        'count by (runtime, device) (model_server_model_info{namespace="model-serving"})')
