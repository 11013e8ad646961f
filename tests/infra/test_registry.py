from __future__ import annotations

import json

import pytest

from review.records import Synthesis
from tests.support.stacks import synthesized


def test_repository_is_immutable_and_encrypted(stack_synthesis: Synthesis) -> None:
    repository = stack_synthesis.one("aws:ecr/repository:Repository").inputs
    assert repository["name"] == f"model-serving-{stack_synthesis.stack}/model-server"
    assert repository["imageTagMutability"] == "IMMUTABLE"
    # Repository-level scan-on-push is deprecated: scanning is the registry's (below).
    assert "imageScanningConfiguration" not in repository
    assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert repository["forceDelete"] is False


@pytest.mark.parametrize(("stack", "scan_type", "frequency"), [
    ("dev", "BASIC", "SCAN_ON_PUSH"), ("staging", "BASIC", "SCAN_ON_PUSH"), ("prod", "ENHANCED", "CONTINUOUS_SCAN")])
def test_the_registry_scans_this_stacks_repository(stack: str, scan_type: str, frequency: str) -> None:
    synthesis = synthesized(stack)
    scanning = synthesis.one("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration").inputs
    assert scanning["scanType"] == scan_type
    assert scanning["rules"] == [{"scanFrequency": frequency, "repositoryFilters": [
        {"filter": f"model-serving-{stack}/model-server", "filterType": "WILDCARD"}]}]


def test_repository_is_protected_only_in_prod() -> None:
    for stack in ("dev", "staging", "prod"):
        repository = synthesized(stack).one("aws:ecr/repository:Repository")
        assert repository.options["protect"] is (stack == "prod")


def test_lifecycle_policy_expires_untagged_and_keeps_the_configured_count() -> None:
    for stack, keep in (("dev", 10), ("staging", 30), ("prod", 50)):
        policy = json.loads(synthesized(stack).one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])
        untagged, newest = sorted(policy["rules"], key=lambda rule: rule["rulePriority"])
        assert untagged["selection"]["tagStatus"] == "untagged"
        assert newest["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep}
