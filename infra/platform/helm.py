"""How the platform installs Helm charts: pinned versions (infra/versions.py) and one choice per chart.

`helm.v4.Chart` renders every object as its own Pulumi resource, so a reviewer's preview
shows per-object diffs, but it runs no Helm hooks. `helm.v3.Release` runs Helm itself
(hooks, `helm list`) and shows as one opaque resource. Each chart's file says which it
uses and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.versions import HELM_CHARTS

NAMESPACE = "kube-system"
# The autoscaler and the ingress controller keep the cluster serving: never preempt them for workloads.
CLUSTER_CRITICAL = "system-cluster-critical"


def container_resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    """A system container's requests, and a memory limit (no CPU limit: it would only throttle)."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def chart(name: str, values: dict[str, Any], wait_for: Sequence[pulumi.Resource],
          opts: pulumi.ResourceOptions, namespace: str = NAMESPACE, skip_crds: bool = False) -> k8s.helm.v4.Chart:
    """A pinned chart from its repository, or from its OCI registry (`oci://.../<name>`, no repository
    options: https://www.pulumi.com/registry/packages/kubernetes/api-docs/helm/v4/chart/#chart-resolution).
    `skip_crds` leaves out the chart's crds/ (another chart installs and upgrades them)."""
    pinned = HELM_CHARTS[name]
    return k8s.helm.v4.Chart(
        name,
        chart=f"{pinned.repository}/{pinned.name}" if pinned.oci else pinned.name,
        version=pinned.version,
        repository_opts=None if pinned.oci else {"repo": pinned.repository},
        namespace=namespace,
        values=values,
        skip_crds=skip_crds or None,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(wait_for))),
    )


def release(name: str, values: dict[str, Any], wait_for: Sequence[pulumi.Resource],
            opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    pinned = HELM_CHARTS[name]
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=pinned.name,
        version=pinned.version,
        repository_opts={"repo": pinned.repository},
        namespace=NAMESPACE,
        values=values,
        # A failed upgrade rolls back instead of leaving a half-applied release.
        atomic=True,
        cleanup_on_fail=True,
        max_history=10,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(wait_for))),
    )
