"""`pulumi up` waits for the release, and fails when it fails: a command that runs
delivery/release_wait.py against the cluster each time the pods' template changes.

`pulumi.com/waitFor` cannot do this: it only succeeds or times out, never fails on a Degraded
Rollout (pulumi/pulumi-kubernetes#4428), and Argo stores `observedGeneration` as a string, so a
stale Healthy can match. The command exits non-zero, naming the metric that failed and its value,
when the canary is aborted or Degraded, or at `releaseTimeoutMinutes`; a failed command fails the
step and stays pending, so a later `pulumi up` waits (and fails) again until the release is fixed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_command as command

from infra.workload.contract import APP_NAME, NAMESPACE

# Run from the project directory with the project's virtualenv (Pulumi.yaml's runtime.options),
# which has the `kubernetes` client; the same on every machine, so the command never shows a diff.
RELEASE_WAIT = f".venv/bin/python -m delivery.release_wait --namespace {NAMESPACE} --rollout {APP_NAME}"


def template_digest(template: pulumi.Input[object]) -> pulumi.Output[str]:
    """A digest of the pods' template: a new image, model or setting gives a new one, and a new wait."""
    return pulumi.Output.json_dumps(template).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())


def release_wait(name: str, *, template: pulumi.Input[object], timeout_minutes: int, kubeconfig: pulumi.Input[str],
                 parent: pulumi.Resource, wait_for: Sequence[pulumi.Resource]) -> command.local.Command:
    return command.local.Command(
        name,
        create=f"{RELEASE_WAIT} --timeout-s {timeout_minutes * 60}",
        environment={"KUBECONFIG_JSON": pulumi.Output.secret(kubeconfig)},
        triggers=[template_digest(template)],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(wait_for)))
