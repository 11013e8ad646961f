"""The operator's fast way back for one stack, without a build or a `pulumi up`:

    python -m delivery.rollback STACK          (make rollback STACK=prod)

- During a canary (the current pods are not the stable ones): abort it, as
  `kubectl argo rollouts abort` does. Argo puts all traffic back on the stable pods at once.
- After a promotion (current = stable): go back to the previous revision, as
  `kubectl argo rollouts undo` does. Within the Rollout's rollbackWindow, Argo skips the canary
  steps and moves the traffic once that revision's pods are available.

Either way, the operator then reverts the commit that released the bad revision: the next
`pulumi up` finds the spec equal to the stable revision and completes without a canary.

The cluster's kubeconfig is KUBECONFIG_JSON when set (CI), otherwise the stack's `kubeconfig`
output (`pulumi stack output kubeconfig --show-secrets --stack STACK`).

Exit 0 when traffic is, or is now going, back to a good revision (aborted, undone, or already
aborted); exit 1 when nothing was changed (no previous revision, the controller not settled, the
cluster or pulumi failing), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from delivery.kube import HASH_LABEL, REVISION_ANNOTATION, KubeError, connect
from infra.workload.contract import APP_NAME, NAMESPACE

Document = dict[str, Any]

NEXT_STEP = ("Next: revert the commit that released it and deploy the revert: that pulumi up finds the "
             "spec equal to the stable revision and completes without a canary.")


@dataclass(frozen=True)
class Abort:
    message: str
    # A merge patch of the status subresource, as the plugin's abort sends. Its fallback to the main
    # resource is for CRDs without that subresource; the chart's have it.
    # https://github.com/argoproj/argo-rollouts/blob/v1.9.1/pkg/kubectl-argo-rollouts/cmd/abort/abort.go
    patch: Document = field(default_factory=lambda: {"status": {"abort": True}})


@dataclass(frozen=True)
class Undo:
    message: str
    operations: list[Document]


@dataclass(frozen=True)
class Unchanged:
    message: str
    exit_code: int


Action = Abort | Undo | Unchanged


def _revision(replica_set: Document) -> int | None:
    # As the plugin's undo: no annotation counts as revision 0, an unreadable one is skipped.
    value = replica_set["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0")
    return int(value) if value.isdigit() else None


def _pod_hash(replica_set: Document) -> str:
    return str(replica_set["metadata"].get("labels", {}).get(HASH_LABEL, ""))


def _created(replica_set: Document) -> datetime:
    return datetime.fromisoformat(replica_set["metadata"]["creationTimestamp"])


def _owned(rollout: Document, replica_sets: list[Document]) -> list[Document]:
    uid = rollout["metadata"]["uid"]
    return [rs for rs in replica_sets
            if any(owner.get("uid") == uid and owner.get("controller") for owner in
                   rs["metadata"].get("ownerReferences", []))]


def _skips_steps(rollout: Document, target: Document, stable: Document | None, owned: list[Document]) -> bool:
    """Argo's isRollbackWithinWindow: the target was created before the stable pods' ReplicaSet, and
    fewer than rollbackWindow.revisions were created between them.
    https://github.com/argoproj/argo-rollouts/blob/v1.9.1/rollout/sync.go"""
    revisions = int((rollout["spec"].get("rollbackWindow") or {}).get("revisions", 0))
    if stable is None or not revisions or not _created(target) < _created(stable):
        return False
    between = [rs for rs in owned if _created(target) < _created(rs) < _created(stable)]
    return len(between) < revisions


def plan_rollback(rollout: Document, replica_sets: list[Document]) -> Action:
    """What to do about the Rollout, from its live document and the ReplicaSets of its selector."""
    metadata, status = rollout["metadata"], rollout.get("status") or {}
    name = metadata["name"]
    generation, observed = metadata["generation"], status.get("observedGeneration")
    current, stable = status.get("currentPodHash"), status.get("stableRS")
    # Until the controller has read the latest spec (observedGeneration is a string in Argo), the
    # status may name the revision before the one just applied: undoing it would go two back.
    if observed != str(generation) or not current or not stable:
        return Unchanged(f"{name} has no settled status yet (the controller has observed generation "
                         f"{observed or 'none'} of {generation}; stable pods {stable or 'none'}): nothing changed; "
                         "run this again in a few seconds", 1)
    revision = metadata["annotations"][REVISION_ANNOTATION]  # the current pods' revision
    if status.get("abort"):
        return Unchanged(f"{name} is already aborted: all traffic is on the stable pods ({stable}), none on "
                         f"revision {revision} ({current}).\n{NEXT_STEP}", 0)
    if current != stable:
        return Abort(f"aborted the release of {name} revision {revision} ({current}): Argo puts all traffic "
                     f"back on the stable pods ({stable}) at once.\n{NEXT_STEP}")
    owned = _owned(rollout, replica_sets)
    older = [(number, rs) for rs in owned
             if (number := _revision(rs)) is not None and number < int(revision)]
    if not older:
        return Unchanged(f"{name} has no revision before revision {revision} ({current}) to go back to: nothing "
                         "changed. To deploy an older commit, run rollback.yml with mode redeploy.", 1)
    target_revision, target = max(older, key=lambda pair: pair[0])
    template = copy.deepcopy(target["spec"]["template"])
    # As the plugin's undo: the ReplicaSet's template minus the hash label Argo added, replacing
    # spec.template whole (a JSON patch: a merge patch would keep keys the bad revision added).
    # https://github.com/argoproj/argo-rollouts/blob/v1.9.1/pkg/kubectl-argo-rollouts/cmd/undo/undo.go
    template.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    stable_rs = next((rs for rs in owned if _pod_hash(rs) == stable), None)
    if _skips_steps(rollout, target, stable_rs, owned):
        how = ("it is within spec.rollbackWindow, so Argo skips the canary steps and moves all traffic once "
               "its pods are available")
    else:
        how = "it is outside spec.rollbackWindow, so Argo releases it through the canary steps and analysis again"
    return Undo(f"rolled {name} back from revision {revision} ({current}) to revision {target_revision} "
                f"({_pod_hash(target)}): {how}.\n{NEXT_STEP}",
                [{"op": "replace", "path": "/spec/template", "value": template}])


class RolloutTarget(Protocol):
    def rollout(self, name: str) -> Document: ...

    def replica_sets(self, label_selector: str) -> list[Document]: ...

    def merge_patch_status(self, name: str, patch: Document) -> None: ...

    def json_patch(self, name: str, operations: list[Document]) -> None: ...


def roll_back(cluster: RolloutTarget, name: str) -> Action:
    rollout = cluster.rollout(name)
    labels = rollout["spec"]["selector"]["matchLabels"]
    action = plan_rollback(rollout, cluster.replica_sets(",".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    if isinstance(action, Abort):
        cluster.merge_patch_status(name, action.patch)
    elif isinstance(action, Undo):
        cluster.json_patch(name, action.operations)
    return action


class RollbackFailed(Exception):
    pass


def stack_kubeconfig(stack: str, environ: Mapping[str, str]) -> str:
    if environ.get("KUBECONFIG_JSON", "").strip():
        return environ["KUBECONFIG_JSON"]
    command = ["pulumi", "stack", "output", "kubeconfig", "--show-secrets", "--stack", stack]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise RollbackFailed("the pulumi CLI is not installed: install it, or give the cluster's kubeconfig "
                             "in KUBECONFIG_JSON") from error
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RollbackFailed(f"`{' '.join(command)}` failed: {detail}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="dev, staging or prod")
    options = parser.parse_args(argv)
    try:
        kubeconfig = stack_kubeconfig(options.stack, os.environ)
        with connect(kubeconfig, NAMESPACE) as cluster:
            action = roll_back(cluster, APP_NAME)
    except (RollbackFailed, KubeError) as error:
        print(f"rollback of {options.stack} failed: {error}", file=sys.stderr)
        return 1
    if isinstance(action, Unchanged) and action.exit_code != 0:
        print(action.message, file=sys.stderr)
        return action.exit_code
    print(action.message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
