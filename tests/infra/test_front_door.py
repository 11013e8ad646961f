"""The front door: HTTPS and a name, who may call the endpoint, WAF, and what prod insists on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from review.mocks import hosted_zone_id
from review.records import Synthesis
from tests.support.stacks import lookups, synthesized, synthesized_with

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
PROD_SIZES = {"replicas": 3, "minReplicas": 3, "maxReplicas": 12}
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
PQ_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
GET_ZONE = "aws:route53/getZone:getZone"
GET_BALANCER_ZONE = "aws:lb/getHostedZoneId:getHostedZoneId"
DEV_SIZES = {"replicas": 1, "minReplicas": 1, "maxReplicas": 2}


def annotations(synthesis: Synthesis) -> dict[str, Any]:
    found: dict[str, Any] = synthesis.one(INGRESS).inputs["metadata"]["annotations"]
    return found


def prod_with(**front_door: Any) -> Synthesis:
    return synthesized_with("prod", {"modelService": {**PROD_SIZES, **front_door}})


def alias_record(synthesis: Synthesis) -> dict[str, Any]:
    """The domain's alias record, checked to point at the load balancer through its region's zone."""
    alias: dict[str, Any] = synthesis.one("aws:route53/record:Record", "dns-alias").inputs
    (target,) = alias["aliases"]
    assert target["name"].startswith("k8s-model-ingress-") and target["name"].endswith(".elb.amazonaws.com")
    # The balancer zone is looked up through the stack's provider (AWS's eu-west-1 value in the mock).
    assert lookups(synthesis, GET_BALANCER_ZONE) == [{"args": {"loadBalancerType": "application"},
                                                      "provider": synthesis.one("pulumi:providers:aws").name}]
    assert target["zoneId"] == "Z32O12XQLNTSW2" and target["evaluateTargetHealth"] is True
    return alias


# -- HTTPS at a name of our own -----------------------------------------------------------------------

def test_a_domain_gets_a_dns_validated_certificate_that_the_listener_waits_for() -> None:
    prod = synthesized("prod")
    certificate = prod.one("aws:acm/certificate:Certificate").inputs
    assert (certificate["domainName"], certificate["validationMethod"]) == ("iris.ml.example.com", "DNS")
    validation_record = prod.one("aws:route53/record:Record", "front-door-certificate-validation")
    assert validation_record.inputs["type"] == "CNAME"
    assert validation_record.inputs["name"].endswith(".iris.ml.example.com.")
    validation = prod.one("aws:acm/certificateValidation:CertificateValidation")
    assert validation.inputs["validationRecordFqdns"] == [validation_record.inputs["name"].rstrip(".")]
    # The Ingress names the certificate only once it is issued: it waits for the validation.
    ingress = prod.one(INGRESS)
    assert validation.urn in ingress.property_dependencies["metadata"]
    assert annotations(prod)["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:eu-west-1:")


def test_https_listener_with_redirect_and_the_post_quantum_tls_policy() -> None:
    found = annotations(synthesized("prod"))
    assert json.loads(found["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert found["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert found["alb.ingress.kubernetes.io/ssl-policy"] == PQ_POLICY


def test_the_domain_points_at_the_load_balancer_and_is_the_model_url() -> None:
    prod = synthesized("prod")
    alias = alias_record(prod)
    assert (alias["name"], alias["type"]) == ("iris.ml.example.com", "A")
    # The zone is the public one found by the configured name (Pulumi.prod.yaml's hostedZoneName)...
    assert lookups(prod, GET_ZONE) == [{"args": {"name": "ml.example.com", "privateZone": False},
                                        "provider": prod.one("pulumi:providers:aws").name}]
    # ...and both records go into the zone that lookup returned (the mock's zone for that name).
    zone = prod.one("aws:route53/record:Record", "front-door-certificate-validation").inputs["zoneId"]
    assert alias["zoneId"] == zone == hosted_zone_id("ml.example.com")
    assert prod.outputs["modelUrl"] == "https://iris.ml.example.com"
    assert prod.outputs["modelName"] == "iris"


def test_a_hosted_zone_given_by_id_is_used_as_is() -> None:
    synthesis = prod_with(domain="iris.ml.example.com", hostedZoneId="Z0123456789ABCDEFGHIJ")
    assert lookups(synthesis, GET_ZONE) == []
    records = {r.name: r.inputs["zoneId"] for r in synthesis.of_type("aws:route53/record:Record")}
    assert records == {"dns-alias": "Z0123456789ABCDEFGHIJ",
                       "front-door-certificate-validation": "Z0123456789ABCDEFGHIJ"}


def test_an_own_certificate_serves_https_without_requesting_one() -> None:
    synthesis = prod_with(certificateArn=CERTIFICATE)
    assert synthesis.of_type("aws:acm/certificate:Certificate") == []
    assert synthesis.of_type("aws:route53/record:Record") == []
    assert lookups(synthesis, GET_ZONE) == []
    found = annotations(synthesis)
    assert json.loads(found["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert found["alb.ingress.kubernetes.io/certificate-arn"] == CERTIFICATE
    assert found["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert found["alb.ingress.kubernetes.io/ssl-policy"] == PQ_POLICY
    assert synthesis.outputs["modelUrl"].startswith("https://k8s-")


def test_an_own_certificate_with_a_domain_still_gets_the_name() -> None:
    synthesis = prod_with(certificateArn=CERTIFICATE, domain="iris.ml.example.com", hostedZoneName="ml.example.com")
    assert synthesis.of_type("aws:acm/certificate:Certificate") == []
    assert [r.name for r in synthesis.of_type("aws:route53/record:Record")] == ["dns-alias"]  # nothing to validate
    alias = alias_record(synthesis)
    assert (alias["name"], alias["type"]) == ("iris.ml.example.com", "A")
    assert alias["zoneId"] == hosted_zone_id("ml.example.com")
    assert annotations(synthesis)["alb.ingress.kubernetes.io/certificate-arn"] == CERTIFICATE
    assert synthesis.outputs["modelUrl"] == "https://iris.ml.example.com"


def test_dev_stays_plain_http_on_the_load_balancers_name() -> None:
    dev = synthesized("dev")
    assert dev.of_type("aws:acm/certificate:Certificate") == dev.of_type("aws:route53/record:Record") == []
    assert "alb.ingress.kubernetes.io/certificate-arn" not in annotations(dev)
    assert dev.outputs["modelUrl"].startswith("http://k8s-")


# -- who may call it --------------------------------------------------------------------------------

def test_an_internal_endpoint_is_reachable_only_from_the_vpc() -> None:
    synthesis = synthesized_with("dev", {"modelService": {**DEV_SIZES, "scheme": "internal"}})
    assert annotations(synthesis)["alb.ingress.kubernetes.io/scheme"] == "internal"


def test_prod_may_serve_plain_http_inside_the_vpc() -> None:
    assert annotations(prod_with(scheme="internal"))["alb.ingress.kubernetes.io/scheme"] == "internal"


def test_allowed_cidrs_become_the_load_balancers_inbound_rules() -> None:
    synthesis = synthesized_with("dev", {"modelService": {**DEV_SIZES,
                                                          "allowedCidrs": ["203.0.113.0/24", "198.51.100.7/32"]}})
    assert annotations(synthesis)["alb.ingress.kubernetes.io/inbound-cidrs"] == "203.0.113.0/24,198.51.100.7/32"
    assert annotations(synthesized("dev"))["alb.ingress.kubernetes.io/inbound-cidrs"] == "0.0.0.0/0"


def test_prod_turns_on_deletion_protection_and_every_stack_drops_invalid_headers() -> None:
    for stack, protected in (("dev", False), ("staging", False), ("prod", True)):
        attributes = annotations(synthesized(stack))["alb.ingress.kubernetes.io/load-balancer-attributes"].split(",")
        assert "routing.http.drop_invalid_header_fields.enabled=true" in attributes
        assert ("deletion_protection.enabled=true" in attributes) is protected


# -- WAF ----------------------------------------------------------------------------------------------

def test_waf_has_the_managed_rule_groups_and_a_rate_limit_per_client_ip() -> None:
    prod = synthesized("prod")
    acl = prod.one("aws:wafv2/webAcl:WebAcl").inputs
    assert acl["scope"] == "REGIONAL" and acl["defaultAction"] == {"allow": {}}
    rules = {rule["name"]: rule for rule in acl["rules"]}
    assert rules["rate-limit-per-client-ip"]["statement"]["rateBasedStatement"] == {
        "limit": 3000, "aggregateKeyType": "IP", "evaluationWindowSec": 300}
    assert rules["rate-limit-per-client-ip"]["action"] == {"block": {}}
    managed = {name: rule["statement"]["managedRuleGroupStatement"] for name, rule in rules.items()
               if "managedRuleGroupStatement" in rule["statement"]}
    assert set(managed) == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                            "AWSManagedRulesAmazonIpReputationList"}
    # Inference bodies are larger than the core rule set's 8 KB: counted, not blocked.
    assert managed["AWSManagedRulesCommonRuleSet"]["ruleActionOverrides"] == [
        {"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
    assert len({rule["priority"] for rule in acl["rules"]}) == len(acl["rules"])
    # The Ingress names the web ACL that was created (its ARN is an output of it).
    assert prod.one("aws:wafv2/webAcl:WebAcl").urn in prod.one(INGRESS).property_dependencies["metadata"]
    assert annotations(prod)["alb.ingress.kubernetes.io/wafv2-acl-arn"].startswith("arn:aws:wafv2:eu-west-1:")


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_without_waf_there_is_no_acl_no_annotation_and_no_waf_permission(stack: str) -> None:
    synthesis = synthesized(stack)
    assert synthesis.of_type("aws:wafv2/webAcl:WebAcl") == []
    assert "alb.ingress.kubernetes.io/wafv2-acl-arn" not in annotations(synthesis)
    policy = synthesis.one("aws:iam/rolePolicy:RolePolicy", "ingress-controller").inputs["policy"]
    assert "wafv2:" not in policy and "SetWebAcl" not in policy


def test_with_waf_the_controller_gets_its_flag_and_exactly_its_permissions() -> None:
    prod = synthesized("prod")
    policy = json.loads(prod.one("aws:iam/rolePolicy:RolePolicy", "ingress-controller").inputs["policy"])
    (waf,) = [s for s in policy["Statement"] if s["Sid"] == "AttachWebAcl"]
    assert set(waf["Action"]) == {"wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL",
                                  "wafv2:DisassociateWebACL", "elasticloadbalancing:SetWebAcl"}
    release = prod.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert release["enableWafv2"] is True
