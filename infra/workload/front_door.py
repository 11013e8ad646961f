"""FrontDoor: what stands before the load balancer. The TLS certificate for the endpoint's domain
(ACM, validated through DNS records in its Route 53 zone; `pulumi up` waits for it to be issued)
and, optionally, an AWS WAF web ACL. The Ingress names both in its annotations, and the ALB
controller attaches them to the load balancer it creates.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.identity import StackIdentity
from infra.settings import ModelServiceSettings

# WAF evaluates rate-based rules over this window (seconds).
RATE_WINDOW_SECONDS = 300
# AWS managed rule groups, in evaluation order after the rate limit
# (https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-list.html).
MANAGED_RULE_GROUPS = ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesCommonRuleSet")
# The core rule set blocks request bodies over 8 KB (SizeRestrictions_BODY); inference requests
# are bigger, and the server enforces its own body limit (413). Count them instead of blocking.
RULE_OVERRIDES: dict[str, list[str]] = {"AWSManagedRulesCommonRuleSet": ["SizeRestrictions_BODY"]}


@dataclass(frozen=True)
class FrontDoorArgs:
    identity: StackIdentity
    # The endpoint's front-door settings: domain, hosted zone, certificate, WAF.
    endpoint: ModelServiceSettings
    provider: aws.Provider


def visibility(metric_name: str) -> aws.wafv2.WebAclVisibilityConfigArgsDict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric_name, "sampled_requests_enabled": True}


def web_acl_rules(requests_per_five_minutes: int, name: str) -> list[aws.wafv2.WebAclRuleArgsDict]:
    rules: list[aws.wafv2.WebAclRuleArgsDict] = [{
        "name": "rate-limit-per-client-ip",
        "priority": 0,
        "action": {"block": {}},
        "statement": {"rate_based_statement": {"limit": requests_per_five_minutes, "aggregate_key_type": "IP",
                                               "evaluation_window_sec": RATE_WINDOW_SECONDS}},
        "visibility_config": visibility(f"{name}-rate-limit"),
    }]
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
        rules.append({
            "name": group,
            "priority": priority,
            "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": {
                "vendor_name": "AWS", "name": group,
                "rule_action_overrides": [{"name": rule, "action_to_use": {"count": {}}}
                                          for rule in RULE_OVERRIDES.get(group, [])] or None}},
            "visibility_config": visibility(f"{name}-{group}"),
        })
    return rules


class FrontDoor(pulumi.ComponentResource):
    # The certificate's ARN once AWS has issued it (None without a domain of our own).
    certificate_arn: pulumi.Output[str] | None = None
    web_acl_arn: pulumi.Output[str] | None = None
    zone_id: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:workload:FrontDoor", name, None, opts)
        identity, model = args.identity, args.endpoint
        child = pulumi.ResourceOptions(parent=self)
        if model.domain is not None:
            self.zone_id = pulumi.Output.from_input(model.hosted_zone_id) if model.hosted_zone_id else \
                aws.route53.get_zone_output(name=model.hosted_zone_name, private_zone=False,
                                            opts=pulumi.InvokeOutputOptions(provider=args.provider)).zone_id
        if model.domain is not None and model.certificate_arn is None:
            certificate = aws.acm.Certificate(
                f"{name}-certificate", domain_name=model.domain, validation_method="DNS",
                # Pulumi creates a replacement before deleting the old one: the listener never goes without.
                tags={**identity.tags, "Name": model.domain}, opts=child)
            option = certificate.domain_validation_options[0]
            record = aws.route53.Record(
                f"{name}-certificate-validation", zone_id=self.zone_id, name=option.resource_record_name,
                type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
                # ACM's validation record for a name is the same for every certificate of that name.
                allow_overwrite=True, opts=child)
            validation = aws.acm.CertificateValidation(
                f"{name}-certificate", certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn],
                opts=child)
            self.certificate_arn = validation.certificate_arn
        elif model.certificate_arn is not None:
            self.certificate_arn = pulumi.Output.from_input(model.certificate_arn)
        if model.waf.enabled:
            acl = aws.wafv2.WebAcl(
                f"{name}-waf", name=f"{identity.name}-model", scope="REGIONAL",
                description=f"Managed rules and a per-client rate limit before the model endpoint of {identity.name}",
                default_action={"allow": {}},
                rules=web_acl_rules(model.waf.requests_per_five_minutes, identity.name),
                visibility_config=visibility(f"{identity.name}-model"),
                tags=identity.tags, opts=child)
            self.web_acl_arn = acl.arn
        self.register_outputs({"certificateArn": self.certificate_arn, "webAclArn": self.web_acl_arn})
