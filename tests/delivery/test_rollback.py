"""The fast rollback: what it decides from recorded Rollouts and ReplicaSets, what it sends to a
real (local) API server through the kubernetes client, and what the operator reads."""

from __future__ import annotations

import copy
import json
import os
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from delivery.rollback import Abort, Unchanged, Undo, main, plan_rollback

FIXTURES = Path(__file__).parent / "fixtures"
HASH_LABEL = "rollouts-pod-template-hash"
NEXT_STEP = ("Next: revert the commit that released it and deploy the revert: that pulumi up finds the "
             "spec equal to the stable revision and completes without a canary.")
POD_LABELS = {"app.kubernetes.io/instance": "model-serving-prod", "app.kubernetes.io/name": "model-server",
              "app.kubernetes.io/part-of": "model-serving"}


def recorded(name: str) -> dict[str, list[dict[str, Any]]]:
    """A fixture's documents by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in yaml.safe_load((FIXTURES / name).read_text())["items"]:
        by_kind.setdefault(item["kind"], []).append(item)
    return by_kind


def plan(name: str) -> Abort | Undo | Unchanged:
    documents = recorded(name)
    return plan_rollback(documents["Rollout"][0], documents.get("ReplicaSet", []))


def test_during_a_canary_it_aborts_as_the_kubectl_plugin_does() -> None:
    action = plan("rollback-canary.yaml")
    assert isinstance(action, Abort)
    assert action.patch == {"status": {"abort": True}}
    assert action.message == ("aborted the release of model-server revision 4 (6d4f9c8b7d): Argo puts all traffic "
                              f"back on the stable pods (7c9d5f8b64) at once.\n{NEXT_STEP}")


def test_after_a_promotion_it_restores_the_previous_revisions_template_without_its_hash_label() -> None:
    documents = recorded("rollback-promoted.yaml")
    (previous,) = [rs for rs in documents["ReplicaSet"] if rs["metadata"]["name"] == "model-server-7c9d5f8b64"]
    action = plan("rollback-promoted.yaml")
    assert isinstance(action, Undo)
    expected = copy.deepcopy(previous["spec"]["template"])
    del expected["metadata"]["labels"][HASH_LABEL]
    assert action.operations == [{"op": "replace", "path": "/spec/template", "value": expected}]
    assert action.operations[0]["value"]["metadata"]["labels"] == POD_LABELS
    assert "c07a58" in action.operations[0]["value"]["spec"]["containers"][0]["image"]  # revision 3's image
    assert action.message == (
        "rolled model-server back from revision 4 (6d4f9c8b7d) to revision 3 (7c9d5f8b64): it is within "
        "spec.rollbackWindow, so Argo skips the canary steps and moves all traffic once its pods are available."
        f"\n{NEXT_STEP}")


@pytest.mark.parametrize("change", ["previous created after stable", "no rollbackWindow", "window of 1, one between"])
def test_outside_the_rollback_window_it_says_the_canary_runs_again(change: str) -> None:
    documents = recorded("rollback-promoted.yaml")
    rollout, replica_sets = documents["Rollout"][0], documents["ReplicaSet"]
    by_hash = {rs["metadata"]["labels"][HASH_LABEL]: rs for rs in replica_sets}
    if change == "previous created after stable":  # a reused ReplicaSet keeps its first creation time
        by_hash["7c9d5f8b64"]["metadata"]["creationTimestamp"] = "2026-11-19T08:00:00Z"
    elif change == "no rollbackWindow":
        del rollout["spec"]["rollbackWindow"]
    else:  # one ReplicaSet created between revision 3 and the stable revision 4 fills a window of 1
        rollout["spec"]["rollbackWindow"] = {"revisions": 1}
        by_hash["5b8c4d6f9f"]["metadata"]["creationTimestamp"] = "2026-11-15T00:00:00Z"
    action = plan_rollback(rollout, replica_sets)
    assert isinstance(action, Undo)
    assert ("it is outside spec.rollbackWindow, so Argo releases it through the canary steps and analysis again."
            in action.message)


def test_without_a_previous_revision_nothing_changes_and_it_says_what_to_do_instead() -> None:
    action = plan("rollback-first-release.yaml")
    assert action == Unchanged("model-server has no revision before revision 1 (84f7d6c9b5) to go back to: nothing "
                               "changed. To deploy an older commit, run rollback.yml with mode redeploy.", 1)


def test_an_aborted_release_is_left_as_it_is_and_the_operator_told_the_next_step() -> None:
    action = plan("rollback-aborted.yaml")
    assert action == Unchanged("model-server is already aborted: all traffic is on the stable pods (7c9d5f8b64), "
                               f"none on revision 6 (6d4f9c8b7d).\n{NEXT_STEP}", 0)


def test_before_the_controller_has_read_the_latest_spec_it_changes_nothing() -> None:
    # Status still describes revision 3 as current and stable: an undo would go back two revisions.
    stale = recorded("release-stale.yaml")["Rollout"][0]
    action = plan_rollback(stale, recorded("rollback-promoted.yaml")["ReplicaSet"])
    assert action == Unchanged("model-server has no settled status yet (the controller has observed generation 7 of "
                               "8; stable pods 7c9d5f8b64): nothing changed; run this again in a few seconds", 1)


def test_replica_sets_the_rollout_does_not_control_are_no_revision_to_go_back_to() -> None:
    documents = recorded("rollback-promoted.yaml")
    for rs in documents["ReplicaSet"]:
        if rs["metadata"]["name"] != "model-server-6d4f9c8b7d":
            rs["metadata"]["ownerReferences"][0]["uid"] = "another-rollout"
    action = plan_rollback(documents["Rollout"][0], documents["ReplicaSet"])
    assert isinstance(action, Unchanged) and action.exit_code == 1


# -- the client layer, against a local API server ----------------------------------------------------

@dataclass
class FakeApiServer:
    """Serves recorded documents as the Kubernetes API does and records every request."""

    documents: dict[str, list[dict[str, Any]]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def kubeconfig(self) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "users": [{"name": "test", "user": {"token": "t0ken"}}],
        })

    def answer(self, method: str, url: str, headers: Message, body: bytes) -> tuple[int, Any]:
        parsed = urllib.parse.urlparse(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        self.requests.append({"method": method, "path": parsed.path, "query": query,
                              "content_type": headers.get("Content-Type"),
                              "authorization": headers.get("Authorization"),
                              "body": json.loads(body) if body else None})
        rollout = self.documents["Rollout"][0]
        base = "/apis/argoproj.io/v1alpha1/namespaces/model-serving"
        if parsed.path in (f"{base}/rollouts/model-server", f"{base}/rollouts/model-server/status"):
            return 200, rollout
        kinds = {"/apis/apps/v1/namespaces/model-serving/replicasets": "ReplicaSet",
                 f"{base}/analysisruns": "AnalysisRun"}
        if parsed.path in kinds:
            wanted = dict(pair.split("=") for pair in query.get("labelSelector", "").split(",") if pair)
            items = [item for item in self.documents.get(kinds[parsed.path], [])
                     if wanted.items() <= item["metadata"].get("labels", {}).items()]
            return 200, {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f"the server could not find the requested resource ({parsed.path})"}


@contextmanager
def serve(documents: dict[str, list[dict[str, Any]]]) -> Iterator[FakeApiServer]:
    api = FakeApiServer(documents)

    class Handler(BaseHTTPRequestHandler):
        # http.server dispatches on do_<METHOD> names.
        def do_GET(self) -> None:
            self._reply()

        def do_PATCH(self) -> None:
            self._reply()

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = api.answer(self.command, self.path, self.headers, self.rfile.read(length))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def patches(api: FakeApiServer) -> list[dict[str, Any]]:
    return [request for request in api.requests if request["method"] == "PATCH"]


def test_the_abort_goes_to_the_status_subresource_as_a_merge_patch(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("rollback-canary.yaml")) as api:
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(["prod"]) == 0
    (patch,) = patches(api)
    assert patch == {"method": "PATCH", "path": "/apis/argoproj.io/v1alpha1/namespaces/model-serving/rollouts/"
                                                "model-server/status",
                     "query": {"fieldManager": "model-serving-rollback"},
                     "content_type": "application/merge-patch+json", "authorization": "Bearer t0ken",
                     "body": {"status": {"abort": True}}}
    out = capsys.readouterr().out
    assert out.startswith("aborted the release of model-server revision 4 (6d4f9c8b7d)") and NEXT_STEP in out


def test_the_undo_replaces_the_template_with_a_json_patch(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    documents = recorded("rollback-promoted.yaml")
    with serve(documents) as api:
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(["prod"]) == 0
    (listing,) = [r for r in api.requests if r["path"].endswith("/replicasets")]
    assert listing["query"]["labelSelector"] == ",".join(f"{k}={v}" for k, v in sorted(POD_LABELS.items()))
    (patch,) = patches(api)
    assert patch["path"] == "/apis/argoproj.io/v1alpha1/namespaces/model-serving/rollouts/model-server"
    assert patch["content_type"] == "application/json-patch+json"
    action = plan_rollback(documents["Rollout"][0], documents["ReplicaSet"])
    assert isinstance(action, Undo) and patch["body"] == action.operations
    assert capsys.readouterr().out.startswith("rolled model-server back from revision 4 (6d4f9c8b7d) to revision 3")


def test_nothing_is_patched_without_a_previous_revision(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("rollback-first-release.yaml")) as api:
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(["prod"]) == 1
    assert patches(api) == []
    assert capsys.readouterr().err.startswith("model-server has no revision before revision 1 (84f7d6c9b5)")


def test_a_missing_rollout_is_reported_with_the_api_servers_words(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with serve({"Rollout": [{"metadata": {"name": "elsewhere"}}]}) as api:
        api.answer = lambda *request: (404, {"kind": "Status", "code": 404, "message":  # type: ignore[method-assign]
                                             'rollouts.argoproj.io "model-server" not found'})
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(["prod"]) == 1
    assert capsys.readouterr().err == ("rollback of prod failed: reading rollout model-serving/model-server: "
                                       'HTTP 404: rollouts.argoproj.io "model-server" not found\n')


# -- the command line ------------------------------------------------------------------------------

def fake_pulumi(folder: Path, script: str) -> None:
    pulumi = folder / "pulumi"
    pulumi.write_text(f"#!/bin/sh\n{script}\n")
    pulumi.chmod(pulumi.stat().st_mode | stat.S_IXUSR)


def test_the_kubeconfig_comes_from_the_stacks_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("rollback-aborted.yaml")) as api:
        (tmp_path / "kubeconfig.json").write_text(api.kubeconfig())
        fake_pulumi(tmp_path, f'echo "$@" > {tmp_path}/args\ncat {tmp_path}/kubeconfig.json')
        monkeypatch.delenv("KUBECONFIG_JSON", raising=False)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        assert main(["staging"]) == 0
    assert (tmp_path / "args").read_text() == "stack output kubeconfig --show-secrets --stack staging\n"
    assert capsys.readouterr().out.startswith("model-server is already aborted")


def test_a_pulumi_failure_is_reported_in_its_own_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake_pulumi(tmp_path, "echo \"error: no stack named 'nope' found\" >&2; exit 255")
    monkeypatch.delenv("KUBECONFIG_JSON", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["nope"]) == 1
    assert capsys.readouterr().err == ("rollback of nope failed: `pulumi stack output kubeconfig --show-secrets "
                                       "--stack nope` failed: error: no stack named 'nope' found\n")


def test_without_pulumi_or_a_kubeconfig_it_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECONFIG_JSON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi there
    assert main(["prod"]) == 1
    assert capsys.readouterr().err == ("rollback of prod failed: the pulumi CLI is not installed: install it, or "
                                       "give the cluster's kubeconfig in KUBECONFIG_JSON\n")


def test_a_kubeconfig_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG_JSON", "apiVersion: v1")
    assert main(["prod"]) == 1
    assert capsys.readouterr().err.startswith("rollback of prod failed: the kubeconfig is not JSON (")


def test_the_stack_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "the following arguments are required: stack" in capsys.readouterr().err
