"""Offline plan, cost and diff: what reviewers read."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.settings import PROJECT_DIR
from review import cost
from review.cost import PriceError, estimate, price_table
from review.diff import diff, diff_text
from review.plan import show
from tests.support.stacks import AUTOSCALED, STACKS, autoscaled, synthesized, synthesized_with


def plan(*args: str, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "review.plan", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("stack", STACKS)
def test_every_instance_type_and_region_of_the_stacks_is_priced(stack: str) -> None:
    estimate(synthesized(stack))  # raises PriceError otherwise
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(price_table()["regions"])
    assert price_table()["date"] and price_table()["source"]


def test_cost_range_goes_from_minimum_to_maximum_scale() -> None:
    items = {item.item: item for item in estimate(autoscaled("prod")).items}
    gpu = items["EC2: pool gpu (on-demand)"]
    assert gpu.minimum == 0  # the GPU pool scales to zero
    g5 = price_table()["regions"]["eu-west-1"]["ec2"]["g5.2xlarge"]["onDemandHour"]
    assert gpu.maximum == pytest.approx(4 * g5 * 730)
    cpu = items["EC2: pool cpu (on-demand)"]
    m7i = price_table()["regions"]["eu-west-1"]["ec2"]["m7i.xlarge"]["onDemandHour"]
    assert (cpu.minimum, cpu.maximum) == (pytest.approx(3 * m7i * 730), pytest.approx(12 * m7i * 730))
    assert items["NAT gateways"].minimum == pytest.approx(3 * 0.048 * 730)
    assert items["EKS control plane"].minimum == pytest.approx(73)
    for name in ("EBS: node root volumes (gp3)", "EFS storage", "KMS keys", "Control-plane log ingestion",
                 "Application load balancer"):
        assert name in items


def test_spot_pools_are_priced_at_spot_rates() -> None:
    dev = {item.item: item for item in estimate(autoscaled("dev")).items}
    spot = price_table()["regions"]["us-east-1"]["ec2"]
    assert dev["EC2: pool cpu (spot)"].minimum == pytest.approx(
        2 * min(spot["m7i.large"]["spotHour"], spot["m6i.large"]["spotHour"]) * 730)


def test_an_unpriced_instance_type_is_an_error_not_a_zero() -> None:
    synthesis = synthesized_with("dev", {**AUTOSCALED["dev"], "nodePools": {"cpu": {
        "instanceTypes": ["m7i.48xlarge"], "minSize": 2, "maxSize": 3}}})
    with pytest.raises(PriceError, match=r"no price for instance type m7i\.48xlarge in us-east-1"):
        estimate(synthesis)
    # A Karpenter pool's explicit types must each be priced; its families need one priced size each.
    for pools, message in (({"cpu": {"instanceTypes": ["m7i.48xlarge"], "limits": {"cpu": 96}}},
                            r"no price for instance type m7i\.48xlarge in us-east-1"),
                           ({"cpu": {"instanceFamilies": ["r7i"], "limits": {"cpu": 16}}},
                            r"no price for any r7i instance type in us-east-1")):
        with pytest.raises(PriceError, match=message):
            estimate(synthesized_with("dev", {"nodePools": pools}))


def test_an_unpriced_region_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    table = json.loads(cost.PRICES_FILE.read_text())
    del table["regions"]["us-east-1"]
    monkeypatch.setattr(cost, "price_table", lambda path=None: table)
    with pytest.raises(PriceError) as raised:
        estimate(synthesized("dev"))
    assert str(raised.value) == (f"no prices for region us-east-1 in prices.json (it has {', '.join(table['regions'])}"
                                 f"; prices as of {table['date']}): add the region")


def test_a_node_group_without_capacity_type_or_launch_template_is_priced_as_aws_defaults_it() -> None:
    """On-demand capacity, and a 20 GB root volume (the EKS default without a launch template)."""
    dev = autoscaled("dev")
    group = dev.one("aws:eks/nodeGroup:NodeGroup", "pool-cpu-nodes")
    del group.inputs["capacityType"], group.inputs["launchTemplate"]
    items = {item.item: item for item in estimate(dev).items}
    assert items["EC2: pool cpu (on-demand)"].basis.startswith("2..4 x m7i.large/m6i.large")
    assert items["EBS: node root volumes (gp3)"].basis == "40..130 GB x $0.08/GB-month"  # 2..4 x 20 + 0..1 x 50


def test_show_in_every_format() -> None:
    text = show(synthesized("prod"), "text")
    assert "Estimated monthly cost (eu-west-1, prices as of" in text and "NodeGroup" in text
    markdown = show(synthesized("prod"), "markdown")
    assert "| Item | Minimum | Maximum | Basis |" in markdown and "**Total**" in markdown
    document = json.loads(show(synthesized("prod"), "json"))
    assert document["cost"]["minimum"] < document["cost"]["maximum"]


def test_diff_of_two_stacks_lists_changes_and_the_cost_change() -> None:
    result = diff(synthesized("dev"), synthesized("prod"), "dev", "prod")
    changed = {change.key.rsplit("::", 1)[-1]: change for change in result.changed}
    assert ("inputs.deletionProtection", False, True) in changed["cluster-eks"].changes
    assert ("options.protect", False, True) in changed["registry-model-server"].changes
    assert {r.name for r in result.added} >= {"network-nat-eu-west-1c"}
    text = diff_text(result)
    assert "~ Cluster cluster-eks" in text and "Estimated monthly cost:" in text


def review_imports() -> dict[str, set[str]]:
    """Each review module and the review modules it imports, at the top or inside a function."""
    graph: dict[str, set[str]] = {}
    for path in sorted((PROJECT_DIR / "review").glob("*.py")):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == "review":
                imported |= {f"review.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        graph[f"review.{path.stem}"] = {name for name in imported if name.startswith("review.")}
    return graph


def test_the_review_package_imports_without_a_cycle_and_the_command_line_is_a_leaf() -> None:
    graph = review_imports()
    assert {"review.plan", "review.cost", "review.synth"} <= graph.keys()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path[path.index(module):], module))}"
        if module not in done:
            for imported in sorted(graph.get(module, set())):
                visit(imported, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
    assert [module for module, imported in graph.items() if "review.plan" in imported] == []
    assert graph["review.summary"] <= {"review.records", "review.rendering"}
    assert {"review.summary", "review.diff", "review.cost"} <= graph["review.plan"]


def test_cli_reports_bad_input_without_a_traceback() -> None:
    result = plan("diff", "dev")
    assert result.returncode == 2 and "name two stacks" in result.stderr
    result = plan("show", "nosuchstack")
    assert result.returncode == 2 and "no stack file" in result.stderr and "Traceback" not in result.stderr


def test_secrets_never_appear_in_any_output() -> None:
    outputs = [plan("show", "prod", "--format", fmt).stdout for fmt in ("text", "markdown", "json")]
    outputs.append(plan("diff", "dev", "prod", "--format", "json").stdout)
    for output in outputs:
        assert output
        assert "mock-registry-password" not in output and "certificate-authority-data" not in output
        assert "get-token" not in output  # the kubeconfig is a secret as a whole


def test_diff_against_a_git_revision(tmp_path: Path) -> None:
    """The same stack at the last commit and in a working tree where prod's GPU pool grew."""
    repository = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_DIR, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        (repository / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_DIR / name, repository / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repository, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repository, check=True)
    stack_file = repository / "Pulumi.prod.yaml"
    grown = stack_file.read_text().replace("limits: {cpu: 32, memory: 128Gi, gpus: 4}",
                                           "limits: {cpu: 48, memory: 192Gi, gpus: 6}")
    stack_file.write_text(grown)

    result = plan("diff", "prod", "--base", "HEAD", cwd=repository)
    assert result.returncode == 0, result.stderr
    assert "0 to add, 1 to change, 0 to remove" in result.stdout
    assert "inputs.spec.limits.nvidia.com/gpu: 4 => 6" in result.stdout
    # Two more g5.2xlarge nodes at most, each with its 100 GB root volume.
    prices = price_table()["regions"]["eu-west-1"]
    extra = 2 * (prices["ec2"]["g5.2xlarge"]["onDemandHour"] * 730 + 100 * prices["ebsGp3GbMonth"])
    assert f"(+$0.00 .. +${extra:,.0f})" in result.stdout
    assert plan("diff", "prod", "--base", "no-such-revision", cwd=repository).returncode == 2


# -- inside the charts --------------------------------------------------------------------------------

def test_plan_lists_each_charts_rendered_objects_under_it() -> None:
    from tests.support.charts import rendered_chart

    rendered_chart("dev", "karpenter")  # skips, or fails in CI, when the chart is unavailable
    lines = plan("show", "dev").stdout.splitlines()
    chart = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Chart", "karpenter"])
    children = [line.split() for line in lines[chart + 1:] if line.startswith("      ")][:20]
    assert ["Deployment", "kube-system/karpenter"] in children
    assert ["ServiceAccount", "kube-system/karpenter"] in children
    # ...and the NodePools with their limits, beside the system node group.
    pools = [line for line in lines if line.split()[:1] == ["NodePool"]]
    assert any("karpenter-pools-gpu" in line and "limits=cpu=4,memory=16Gi,nvidia.com/gpu=1" in line for line in pools)
    assert "objects their charts render" in lines[0]


def test_diff_shows_the_rendered_objects_a_value_change_touches() -> None:
    from tests.support.charts import rendered_chart

    rendered_chart("prod-cluster-autoscaler", "cluster-autoscaler")
    newer = synthesized_with("staging", {**AUTOSCALED["staging"], "kubernetesVersion": "1.36"})
    result = diff(autoscaled("staging"), newer, "1.35", "1.36")
    changed = {change.key.rsplit("::", 1)[-1]: change.changes for change in result.changed}
    image = "spec.template.spec.containers[0].image"
    (deployment,) = [changes for key, changes in changed.items()
                     if key == "cluster-autoscaler/Deployment/kube-system/cluster-autoscaler-aws-cluster-autoscaler"]
    assert (f"inputs.{image}", "registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.2",
            "registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1") in deployment
    assert "~ Deployment cluster-autoscaler/Deployment/kube-system/cluster-autoscaler-aws-cluster-autoscaler" in \
        diff_text(result)


def test_diff_shows_the_rendered_objects_a_chart_version_change_touches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chart bumped to a new version whose Deployment changes: the diff names that object."""
    import copy

    import helm_python
    import yaml

    from review import rendering
    from tests.support.charts import rendered_chart

    record = rendered_chart("dev", "metrics-server").record
    charts = tmp_path / "charts"
    charts.mkdir()
    shutil.copy(rendering.archive("metrics-server", "3.13.1", ""), charts)
    source = Path(rendering.load_chart("metrics-server", "3.13.1", "").save_dir(tmp_path / "src"))
    values = yaml.safe_load((source / "values.yaml").read_text())
    values["image"]["tag"] = "v0.8.9"
    (source / "values.yaml").write_text(yaml.safe_dump(values))
    helm_python.package(source, destination=charts, version="3.13.9")
    monkeypatch.setenv("MODEL_SERVING_CHARTS", str(charts))

    before = synthesized("dev")
    after = copy.deepcopy(before)
    next(r for r in after.resources if r.urn == record.urn).inputs["version"] = "3.13.9"
    keys = {change.key.rsplit("::", 1)[-1] for change in diff(before, after, "3.13.1", "3.13.9").changed}
    assert "metrics-server/Deployment/kube-system/metrics-server" in keys
    assert "metrics-server" in keys  # the chart resource itself: its version


# -- the front door's cost --------------------------------------------------------------------------------

def test_front_door_costs_are_itemised_with_free_and_negligible_parts_said_so() -> None:
    items = {item.item: item for item in estimate(synthesized("prod")).items}
    prices = price_table()["global"]
    waf = items["AWS WAF web ACL and rules"]
    assert waf.minimum == waf.maximum == pytest.approx(prices["wafWebAclMonth"] + 4 * prices["wafRuleMonth"])
    assert items["AWS WAF requests"].maximum == pytest.approx(100 * prices["wafRequestsMillion"])
    assert items["ACM public certificate"].maximum == 0 and "free" in items["ACM public certificate"].basis
    assert "negligible" in items["Route 53 records"].basis
    assert items["ECR image scans (Amazon Inspector)"].maximum == pytest.approx(30 * prices["inspectorImageScan"])
    dev = {item.item for item in estimate(synthesized("dev")).items}
    assert not {"AWS WAF web ACL and rules", "ACM public certificate", "ECR image scans (Amazon Inspector)"} & dev


def test_an_internal_load_balancer_has_no_public_addresses() -> None:
    internal = synthesized_with("dev", {"modelService": {"replicas": 1, "minReplicas": 1, "maxReplicas": 2,
                                                   "scheme": "internal"}})
    items = {item.item: item for item in estimate(internal).items}
    assert items["Public IPv4 addresses"].basis.startswith("1 NAT + 0 load balancer addresses")


def test_observability_costs_are_itemised_and_leave_with_it() -> None:
    prices = price_table()
    items = {item.item: item for item in estimate(synthesized("prod")).items}
    assert items["EBS: Prometheus volume (gp3)"].minimum == pytest.approx(
        100 * prices["regions"]["eu-west-1"]["ebsGp3GbMonth"])
    assert items["Container log ingestion"].maximum == pytest.approx(
        50 * prices["regions"]["eu-west-1"]["cloudwatchLogsIngestGb"])
    assert "90 days" in items["Container log storage"].basis
    assert items["S3: load balancer access logs"].maximum == pytest.approx(50 * prices["global"]["s3StandardGbMonth"])
    assert items["SNS alert emails"].maximum == 0
    # Canary analysis needs the in-cluster Prometheus: without observability, canaries are off too.
    dev_model = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())["config"]["model-serving:modelService"]
    off = synthesized_with("dev", {"observability": {"enabled": False},
                                   "modelService": {**dev_model, "canary": {"enabled": False}}})
    assert not {"EBS: Prometheus volume (gp3)", "Container log ingestion", "S3: load balancer access logs"} & {
        item.item for item in estimate(off).items}


# -- the whole estimate, line by line: what a reviewer reads in `make plan` ------------------------------
# Checked by hand against review/prices.json (2026 prices) and the stack files, with nodeProvisioner
# cluster-autoscaler (AUTOSCALED): dev is 2 zones in us-east-1 with a spot CPU pool of 2..4 and a GPU
# pool of 0..1; prod is 3 zones in eu-west-1 behind HTTPS and WAF, with on-demand pools of 3..12 and
# 0..4 nodes. A month is 730 hours. ESTIMATE_DEV_KARPENTER is dev as committed (below).

ESTIMATE_DEV = [
    ('EKS control plane', 73.0, 73.0,
     '1 cluster x $0.1/h (standard support)'),
    ('EC2: pool cpu (spot)', 58.4, 122.64,
     '2..4 x m7i.large/m6i.large at $0.04..$0.042/h'),
    ('EC2: pool gpu (on-demand)', 0.0, 734.38,
     '0..1 x g5.xlarge at $1.006..$1.006/h'),
    ('EBS: node root volumes (gp3)', 8.0, 20.0,
     '100..250 GB x $0.08/GB-month'),
    ('NAT gateways', 32.85, 32.85,
     '1 x $0.045/h, plus per-GB processing (excluded)'),
    ('Public IPv4 addresses', 10.95, 10.95,
     '1 NAT + 2 load balancer addresses x $0.005/h'),
    ('Application load balancer', 16.425, 16.425,
     '1 x $0.0225/h'),
    ('Load balancer capacity units', 5.84, 58.4,
     '1..10 LCU x $0.008/h'),
    ('EFS storage', 0.3, 15.0,
     '1..50 GB x $0.3/GB-month'),
    ('KMS keys', 1.0, 1.0,
     '1 x $1.0/month'),
    ('Control-plane log ingestion', 2.5, 25.0,
     '5..50 GB x $0.5/GB ingested'),
    ('EBS: Prometheus volume (gp3)', 0.8, 0.8,
     '10 GB x $0.08/GB-month'),
    ('Container log ingestion', 1.0, 25.0,
     '2..50 GB x $0.5/GB ingested'),
    ('Container log storage', 0.014, 0.35,
     '2..50 GB a month kept 7 days x $0.03/GB-month'),
    ('S3: load balancer access logs', 0.023, 1.15,
     '1..50 GB x $0.023/GB-month'),
    ('SNS alert emails', 0, 0,
     'first 1,000 emails a month free; then $2 per 100,000'),
]
ESTIMATE_PROD = [
    ('EKS control plane', 73.0, 73.0,
     '1 cluster x $0.1/h (standard support)'),
    ('EC2: pool cpu (on-demand)', 492.312, 1969.248,
     '3..12 x m7i.xlarge at $0.2248..$0.2248/h'),
    ('EC2: pool gpu (on-demand)', 0.0, 3950.76,
     '0..4 x g5.2xlarge at $1.353..$1.353/h'),
    ('EBS: node root volumes (gp3)', 13.2, 88.0,
     '150..1000 GB x $0.088/GB-month'),
    ('NAT gateways', 105.12, 105.12,
     '3 x $0.048/h, plus per-GB processing (excluded)'),
    ('Public IPv4 addresses', 21.9, 21.9,
     '3 NAT + 3 load balancer addresses x $0.005/h'),
    ('Application load balancer', 18.396, 18.396,
     '1 x $0.0252/h'),
    ('Load balancer capacity units', 5.84, 58.4,
     '1..10 LCU x $0.008/h'),
    ('EFS storage', 0.33, 16.5,
     '1..50 GB x $0.33/GB-month'),
    ('KMS keys', 1.0, 1.0,
     '1 x $1.0/month'),
    ('Control-plane log ingestion', 2.85, 28.5,
     '5..50 GB x $0.57/GB ingested'),
    ('ACM public certificate', 0, 0,
     '1 x free'),
    ('Route 53 records', 0, 0,
     'alias queries to the load balancer are free; other queries negligible ($0.40/million)'),
    ('AWS WAF web ACL and rules', 9.0, 9.0,
     '$5.0/month + 4 rules x $1.0/month'),
    ('AWS WAF requests', 0.6, 60.0,
     '1..100 million requests x $0.6/million'),
    ('ECR image scans (Amazon Inspector)', 0.45, 2.7,
     '5..30 pushed images x $0.09'),
    ('ECR rescans (Amazon Inspector)', 0.1, 1.5,
     '10..150 rescans x $0.01'),
    ('EBS: Prometheus volume (gp3)', 8.8, 8.8,
     '100 GB x $0.088/GB-month'),
    ('Container log ingestion', 1.14, 28.5,
     '2..50 GB x $0.57/GB ingested'),
    ('Container log storage', 0.18, 4.5,
     '2..50 GB a month kept 90 days x $0.03/GB-month'),
    ('S3: load balancer access logs', 0.023, 1.15,
     '1..50 GB x $0.023/GB-month'),
    ('SNS alert emails', 0, 0,
     'first 1,000 emails a month free; then $2 per 100,000'),
]


# dev with Karpenter: the system node group always on (2 x m7i.large); the CPU pool from the node the
# model's one minimum replica needs (500m, 512Mi: the cheapest admitted type, m6i.large on spot) to its
# limits (cpu 8, memory 32Gi: 4 x m7i.large, as dear as 2 x xlarge or 1 x 2xlarge, the most volumes);
# the GPU pool to 1 x g5.xlarge (cpu 4); each node's 50 GB root volume; SQS and EventBridge free.
ESTIMATE_DEV_KARPENTER = [
    ('EKS control plane', 73.0, 73.0, '1 cluster x $0.1/h (standard support)'),
    ('EC2: pool system (on-demand)', 147.168, 147.168, '2..2 x m7i.large at $0.1008..$0.1008/h'),
    ('EBS: node root volumes (gp3)', 8.0, 8.0, '100..100 GB x $0.08/GB-month'),
    ('EC2: Karpenter pool cpu', 29.2, 294.336, '1 x m6i.large at $0.04/h spot (minimum replicas: 1 model-server) '
                                              '.. 4 x m7i.large at $0.1008/h on demand (limits cpu 8, memory 32Gi)'),
    ('EBS: Karpenter pool cpu root volumes (gp3)', 4.0, 16.0, '50..200 GB x $0.08/GB-month'),
    ('EC2: Karpenter pool gpu', 0.0, 734.38,
     '0..1 x g5.xlarge at $1.006/h on demand (limits cpu 4, memory 16Gi, nvidia.com/gpu 1)'),
    ('EBS: Karpenter pool gpu root volumes (gp3)', 0.0, 4.0, '0..50 GB x $0.08/GB-month'),
    ('SQS + EventBridge: interruption queue and rules', 0.0, 0.0,
     "1 queue, 5 rules: ~130k long polls/month is inside SQS's free 1M requests; AWS service events on the "
     "default bus are free"),
    *ESTIMATE_DEV[4:],
]


@pytest.mark.parametrize(("stack", "expected"), [("dev", ESTIMATE_DEV), ("prod", ESTIMATE_PROD),
                                                 ("dev-karpenter", ESTIMATE_DEV_KARPENTER)])
def test_the_estimate_line_by_line(stack: str, expected: list[tuple[str, float, float, str]]) -> None:
    result = estimate(synthesized("dev") if stack == "dev-karpenter" else autoscaled(stack))
    stack = stack.removesuffix("-karpenter")
    assert (result.region, result.currency) == ({"dev": "us-east-1", "prod": "eu-west-1"}[stack], "USD")
    assert [(item.item, item.basis) for item in result.items] == [(item, basis) for item, _, _, basis in expected]
    assert [(item.minimum, item.maximum) for item in result.items] == [
        (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4)) for _, low, high, _ in expected]


def test_the_estimate_as_json_rounds_its_totals_to_cents() -> None:
    result = estimate(synthesized("dev"))
    as_json = result.to_dict()
    assert (as_json["region"], as_json["currency"]) == ("us-east-1", "USD")
    assert as_json["prices_date"] == price_table()["date"]
    assert (as_json["minimum"], as_json["maximum"]) == (round(result.minimum, 2), round(result.maximum, 2))
    assert as_json["items"][0] == {"item": "EKS control plane", "minimum": 73.0, "maximum": 73.0,
                                   "basis": "1 cluster x $0.1/h (standard support)"}
    assert len(as_json["items"]) == len(result.items)


# -- the estimate as a reviewer reads it in `make plan`: text and markdown, word for word -----------------

def test_money_shows_whole_dollars_from_10_and_cents_below() -> None:
    assert [cost.money(value) for value in (0, 0.014, 9.994, 10, 10.5, 1234.56, 6446.9)] == [
        "$0.00", "$0.01", "$9.99", "$10", "$10", "$1,235", "$6,447"]


COST_TEXT_DEV = [
    "Estimated monthly cost (us-east-1, prices as of 2026-11-28): $211 .. $1,137",
    "  EKS control plane                    $73 ..       $73   1 cluster x $0.1/h (standard support)",
    "  EC2: pool cpu (spot)                 $58 ..      $123   2..4 x m7i.large/m6i.large at $0.04..$0.042/h",
    "  EC2: pool gpu (on-demand)          $0.00 ..      $734   0..1 x g5.xlarge at $1.006..$1.006/h",
    "  EBS: node root volumes (gp3)       $8.00 ..       $20   100..250 GB x $0.08/GB-month",
    "  NAT gateways                         $33 ..       $33   1 x $0.045/h, plus per-GB processing (excluded)",
    "  Public IPv4 addresses                $11 ..       $11   1 NAT + 2 load balancer addresses x $0.005/h",
    "  Application load balancer            $16 ..       $16   1 x $0.0225/h",
    "  Load balancer capacity units       $5.84 ..       $58   1..10 LCU x $0.008/h",
    "  EFS storage                        $0.30 ..       $15   1..50 GB x $0.3/GB-month",
    "  KMS keys                           $1.00 ..     $1.00   1 x $1.0/month",
    "  Control-plane log ingestion        $2.50 ..       $25   5..50 GB x $0.5/GB ingested",
    "  EBS: Prometheus volume (gp3)       $0.80 ..     $0.80   10 GB x $0.08/GB-month",
    "  Container log ingestion            $1.00 ..       $25   2..50 GB x $0.5/GB ingested",
    "  Container log storage              $0.01 ..     $0.35   2..50 GB a month kept 7 days x $0.03/GB-month",
    "  S3: load balancer access logs      $0.02 ..     $1.15   1..50 GB x $0.023/GB-month",
    "  SNS alert emails                   $0.00 ..     $0.00   first 1,000 emails a month free; then $2 per 100,000",
    "  minimum: node pools at minSize (GPU pools at 0); maximum: every pool at maxSize",
]
COST_MARKDOWN_DEV = [
    "**Estimated monthly cost**: $211 to $1,137 (us-east-1, prices as of 2026-11-28)",
    "",
    "| Item | Minimum | Maximum | Basis |",
    "| --- | ---: | ---: | --- |",
    "| EKS control plane | $73 | $73 | 1 cluster x $0.1/h (standard support) |",
    "| EC2: pool cpu (spot) | $58 | $123 | 2..4 x m7i.large/m6i.large at $0.04..$0.042/h |",
    "| EC2: pool gpu (on-demand) | $0.00 | $734 | 0..1 x g5.xlarge at $1.006..$1.006/h |",
    "| EBS: node root volumes (gp3) | $8.00 | $20 | 100..250 GB x $0.08/GB-month |",
    "| NAT gateways | $33 | $33 | 1 x $0.045/h, plus per-GB processing (excluded) |",
    "| Public IPv4 addresses | $11 | $11 | 1 NAT + 2 load balancer addresses x $0.005/h |",
    "| Application load balancer | $16 | $16 | 1 x $0.0225/h |",
    "| Load balancer capacity units | $5.84 | $58 | 1..10 LCU x $0.008/h |",
    "| EFS storage | $0.30 | $15 | 1..50 GB x $0.3/GB-month |",
    "| KMS keys | $1.00 | $1.00 | 1 x $1.0/month |",
    "| Control-plane log ingestion | $2.50 | $25 | 5..50 GB x $0.5/GB ingested |",
    "| EBS: Prometheus volume (gp3) | $0.80 | $0.80 | 10 GB x $0.08/GB-month |",
    "| Container log ingestion | $1.00 | $25 | 2..50 GB x $0.5/GB ingested |",
    "| Container log storage | $0.01 | $0.35 | 2..50 GB a month kept 7 days x $0.03/GB-month |",
    "| S3: load balancer access logs | $0.02 | $1.15 | 1..50 GB x $0.023/GB-month |",
    "| SNS alert emails | $0.00 | $0.00 | first 1,000 emails a month free; then $2 per 100,000 |",
    "| **Total** | **$211** | **$1,137** | |",
    "",
    "Minimum: node pools at minSize (GPU pools at zero). Maximum: every pool at maxSize.",
]
COST_TEXT_PROD = [
    "Estimated monthly cost (eu-west-1, prices as of 2026-11-28): $754 .. $6,447",
    "  EKS control plane                         $73 ..       $73   1 cluster x $0.1/h (standard support)",
    "  EC2: pool cpu (on-demand)                $492 ..    $1,969   3..12 x m7i.xlarge at $0.2248..$0.2248/h",
    "  EC2: pool gpu (on-demand)               $0.00 ..    $3,951   0..4 x g5.2xlarge at $1.353..$1.353/h",
    "  EBS: node root volumes (gp3)              $13 ..       $88   150..1000 GB x $0.088/GB-month",
    "  NAT gateways                             $105 ..      $105   3 x $0.048/h, plus per-GB processing (excluded)",
    "  Public IPv4 addresses                     $22 ..       $22   3 NAT + 3 load balancer addresses x $0.005/h",
    "  Application load balancer                 $18 ..       $18   1 x $0.0252/h",
    "  Load balancer capacity units            $5.84 ..       $58   1..10 LCU x $0.008/h",
    "  EFS storage                             $0.33 ..       $16   1..50 GB x $0.33/GB-month",
    "  KMS keys                                $1.00 ..     $1.00   1 x $1.0/month",
    "  Control-plane log ingestion             $2.85 ..       $28   5..50 GB x $0.57/GB ingested",
    "  ACM public certificate                  $0.00 ..     $0.00   1 x free",
    "  Route 53 records                        $0.00 ..     $0.00   alias queries to the load balancer"
    " are free; other queries negligible ($0.40/million)",
    "  AWS WAF web ACL and rules               $9.00 ..     $9.00   $5.0/month + 4 rules x $1.0/month",
    "  AWS WAF requests                        $0.60 ..       $60   1..100 million requests x $0.6/million",
    "  ECR image scans (Amazon Inspector)      $0.45 ..     $2.70   5..30 pushed images x $0.09",
    "  ECR rescans (Amazon Inspector)          $0.10 ..     $1.50   10..150 rescans x $0.01",
    "  EBS: Prometheus volume (gp3)            $8.80 ..     $8.80   100 GB x $0.088/GB-month",
    "  Container log ingestion                 $1.14 ..       $28   2..50 GB x $0.57/GB ingested",
    "  Container log storage                   $0.18 ..     $4.50   2..50 GB a month kept 90 days x $0.03/GB-month",
    "  S3: load balancer access logs           $0.02 ..     $1.15   1..50 GB x $0.023/GB-month",
    "  SNS alert emails                        $0.00 ..     $0.00   first 1,000 emails a month free;"
    " then $2 per 100,000",
    "  minimum: node pools at minSize (GPU pools at 0); maximum: every pool at maxSize",
]
COST_MARKDOWN_PROD = [
    "**Estimated monthly cost**: $754 to $6,447 (eu-west-1, prices as of 2026-11-28)",
    "",
    "| Item | Minimum | Maximum | Basis |",
    "| --- | ---: | ---: | --- |",
    "| EKS control plane | $73 | $73 | 1 cluster x $0.1/h (standard support) |",
    "| EC2: pool cpu (on-demand) | $492 | $1,969 | 3..12 x m7i.xlarge at $0.2248..$0.2248/h |",
    "| EC2: pool gpu (on-demand) | $0.00 | $3,951 | 0..4 x g5.2xlarge at $1.353..$1.353/h |",
    "| EBS: node root volumes (gp3) | $13 | $88 | 150..1000 GB x $0.088/GB-month |",
    "| NAT gateways | $105 | $105 | 3 x $0.048/h, plus per-GB processing (excluded) |",
    "| Public IPv4 addresses | $22 | $22 | 3 NAT + 3 load balancer addresses x $0.005/h |",
    "| Application load balancer | $18 | $18 | 1 x $0.0252/h |",
    "| Load balancer capacity units | $5.84 | $58 | 1..10 LCU x $0.008/h |",
    "| EFS storage | $0.33 | $16 | 1..50 GB x $0.33/GB-month |",
    "| KMS keys | $1.00 | $1.00 | 1 x $1.0/month |",
    "| Control-plane log ingestion | $2.85 | $28 | 5..50 GB x $0.57/GB ingested |",
    "| ACM public certificate | $0.00 | $0.00 | 1 x free |",
    "| Route 53 records | $0.00 | $0.00 | alias queries to the load balancer are free; other queries"
    " negligible ($0.40/million) |",
    "| AWS WAF web ACL and rules | $9.00 | $9.00 | $5.0/month + 4 rules x $1.0/month |",
    "| AWS WAF requests | $0.60 | $60 | 1..100 million requests x $0.6/million |",
    "| ECR image scans (Amazon Inspector) | $0.45 | $2.70 | 5..30 pushed images x $0.09 |",
    "| ECR rescans (Amazon Inspector) | $0.10 | $1.50 | 10..150 rescans x $0.01 |",
    "| EBS: Prometheus volume (gp3) | $8.80 | $8.80 | 100 GB x $0.088/GB-month |",
    "| Container log ingestion | $1.14 | $28 | 2..50 GB x $0.57/GB ingested |",
    "| Container log storage | $0.18 | $4.50 | 2..50 GB a month kept 90 days x $0.03/GB-month |",
    "| S3: load balancer access logs | $0.02 | $1.15 | 1..50 GB x $0.023/GB-month |",
    "| SNS alert emails | $0.00 | $0.00 | first 1,000 emails a month free; then $2 per 100,000 |",
    "| **Total** | **$754** | **$6,447** | |",
    "",
    "Minimum: node pools at minSize (GPU pools at zero). Maximum: every pool at maxSize.",
]


@pytest.mark.parametrize(("stack", "text", "markdown"), [
    ("dev", COST_TEXT_DEV, COST_MARKDOWN_DEV), ("prod", COST_TEXT_PROD, COST_MARKDOWN_PROD)])
def test_the_estimate_as_text_and_markdown_word_for_word(stack: str, text: list[str], markdown: list[str]) -> None:
    result = estimate(autoscaled(stack))
    assert cost.cost_text(result) == "\n".join(text)
    assert cost.cost_markdown(result) == "\n".join(markdown)


def test_a_karpenter_stacks_range_says_what_its_ends_assume() -> None:
    result = estimate(synthesized("prod"))
    assert cost.cost_text(result).splitlines()[-1] == (
        "  minimum: the system node group, and in each Karpenter pool the nodes its workloads' minimum replicas "
        "need (packed, DaemonSets aside; other pools empty); maximum: every Karpenter pool filled to its limits, "
        "on demand")
    assert cost.cost_markdown(result).splitlines()[-1] == (
        "Minimum: the system node group, and in each Karpenter pool the nodes its workloads' minimum replicas "
        "need (packed, DaemonSets aside; other pools empty). Maximum: every Karpenter pool filled to its limits, "
        "on demand.")
    items = {item.item: item for item in result.items}
    # prod's GPU pool: limits gpus 4, cpu 32 → 4 x g5.2xlarge (8 vCPUs, 1 GPU each) on demand.
    g5 = price_table()["regions"]["eu-west-1"]["ec2"]["g5.2xlarge"]["onDemandHour"]
    assert (items["EC2: Karpenter pool gpu"].minimum, items["EC2: Karpenter pool gpu"].maximum) == (
        0, pytest.approx(4 * g5 * 730))
    m7i = price_table()["regions"]["eu-west-1"]["ec2"]["m7i.xlarge"]["onDemandHour"]
    assert items["EC2: pool system (on-demand)"].minimum == pytest.approx(3 * m7i * 730)
    # prod's model: minReplicas 3 of 2 CPUs each on the on-demand CPU pool (m7i): 6 CPUs packed need one
    # m7i.2xlarge (8 vCPUs, ~7.9 allocatable), as cheap as two xlarges; an m7i.large holds none (2 vCPUs).
    m7i_2x = price_table()["regions"]["eu-west-1"]["ec2"]["m7i.2xlarge"]["onDemandHour"]
    assert items["EC2: Karpenter pool cpu"].minimum == pytest.approx(m7i_2x * 730)


def test_the_karpenter_floor_follows_the_models_min_replicas() -> None:
    """More minimum replicas, more always-on nodes on the model's pool."""
    def floor(overrides: dict[str, object]) -> tuple[float, str]:
        items = {i.item: i for i in estimate(synthesized_with("dev", overrides)).items}
        return items["EC2: Karpenter pool cpu"].minimum, items["EC2: Karpenter pool cpu"].basis

    one, _ = floor({"modelService": {"replicas": 1, "minReplicas": 1, "maxReplicas": 8}})
    eight, basis = floor({"modelService": {"replicas": 8, "minReplicas": 8, "maxReplicas": 8}})
    assert 0 < one < eight and "(minimum replicas: 8 model-server)" in basis
