"""The cluster as the delivery scripts see it: one namespace's Rollouts, AnalysisRuns and
ReplicaSets as plain dicts (the shape `kubectl get -o json` prints), and the two patches Argo
Rollouts' kubectl plugin sends.

Everything goes through CustomObjectsApi, ReplicaSets included (`apps/v1` is a group like any
other): the logic reads the documents exactly as recorded in tests/delivery/fixtures/, never
the client's model objects.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

ROLLOUTS = ("argoproj.io", "v1alpha1")
REPLICASETS = ("apps", "v1")
# What Argo puts on the ReplicaSets and AnalysisRuns of each revision (pkg/apis/rollouts/v1alpha1/types.go).
HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
# Who changed the Rollout, as its managedFields (and a later server-side apply conflict) will say.
FIELD_MANAGER = "model-serving-rollback"
# Throttling and the API server's own failures pass; anything else (404, 403) will not by waiting.
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
REQUEST_TIMEOUT_S = 30

Document = dict[str, Any]


class KubeError(Exception):
    """A request the cluster did not answer, said in one line; `retryable` if asking again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _api_message(error: client.ApiException) -> str:
    # The API server answers errors with a Status document; its message names the object.
    try:
        message = json.loads(error.body or "")["message"]
    except (ValueError, KeyError, TypeError):
        message = error.reason or "no message"
    return f"HTTP {error.status}: {message}"


class Cluster:
    """One namespace of the cluster a kubeconfig points at."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _call(self, what: str, request: Callable[[], object]) -> Any:
        try:
            return request()
        except client.ApiException as error:
            # A 401 after `aws eks get-token` failed: the client logs the exec error and goes on without a token.
            hint = "; does `aws eks get-token` work with these AWS credentials?" if error.status == 401 else ""
            raise KubeError(f"{what}: {_api_message(error)}{hint}",
                            retryable=error.status in RETRYABLE_STATUSES) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(f"{what}: {error}", retryable=True) from error
        except ConfigException as error:  # the kubeconfig's `aws eks get-token` failed on a refresh
            raise KubeError(f"{what}: no token for the cluster: {error}", retryable=False) from error

    def rollout(self, name: str) -> Document:
        return cast(Document, self._call(f"reading rollout {self.namespace}/{name}", lambda: (
            self.api.get_namespaced_custom_object(*ROLLOUTS, self.namespace, "rollouts", name,
                                                  _request_timeout=REQUEST_TIMEOUT_S))))

    def _list(self, group_version: tuple[str, str], plural: str, label_selector: str) -> list[Document]:
        answer = self._call(f"listing {plural} in {self.namespace} ({label_selector})", lambda: (
            self.api.list_namespaced_custom_object(*group_version, self.namespace, plural,
                                                   label_selector=label_selector,
                                                   _request_timeout=REQUEST_TIMEOUT_S)))
        return cast(list[Document], answer["items"])

    def analysis_runs(self, label_selector: str) -> list[Document]:
        return self._list(ROLLOUTS, "analysisruns", label_selector)

    def replica_sets(self, label_selector: str) -> list[Document]:
        return self._list(REPLICASETS, "replicasets", label_selector)

    def merge_patch_status(self, name: str, patch: Document) -> None:
        self._call(f"patching the status of rollout {self.namespace}/{name}", lambda: (
            self.api.patch_namespaced_custom_object_status(
                *ROLLOUTS, self.namespace, "rollouts", name, patch, field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json", _request_timeout=REQUEST_TIMEOUT_S)))

    def json_patch(self, name: str, operations: list[Document]) -> None:
        self._call(f"patching rollout {self.namespace}/{name}", lambda: (
            self.api.patch_namespaced_custom_object(
                *ROLLOUTS, self.namespace, "rollouts", name, operations, field_manager=FIELD_MANAGER,
                _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT_S)))


@contextmanager
def connect(kubeconfig_json: str, namespace: str) -> Iterator[Cluster]:
    """A client for the kubeconfig given as JSON text (a stack's `kubeconfig` output).

    The kubeconfig lives in a private temporary file only while it is read.
    """
    try:
        json.loads(kubeconfig_json)
    except ValueError as error:
        raise KubeError(f"the kubeconfig is not JSON ({error})", retryable=False) from error
    configuration = client.Configuration()
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as folder:  # mode 0700
        path = Path(folder) / "config.json"
        path.touch(mode=0o600)
        path.write_text(kubeconfig_json)
        try:
            # persist_config=False: nothing is written back; the exec provider refreshes the token
            # in memory before it expires (`aws eks get-token` tokens last 15 minutes).
            config.load_kube_config(config_file=os.fspath(path), client_configuration=configuration,
                                    persist_config=False)
        except (ConfigException, OSError) as error:
            raise KubeError(f"cannot use the kubeconfig: {error}", retryable=False) from error
    with client.ApiClient(configuration) as api_client:
        yield Cluster(client.CustomObjectsApi(api_client), namespace)
