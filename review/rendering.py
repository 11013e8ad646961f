"""Helm charts rendered offline, exactly as the program installs them: for tests and reviewers.

The program installs charts from their repositories at `pulumi up`; nothing here runs then.
Offline, each synthesized `helm.v4.Chart` or `helm.v3.Release` is rendered with Helm's own Go
SDK (PyPI helm-python-sdk) from the archive at the pinned name and version, with the values,
release name and namespace the program passes. Archives are found in, in order:

  1. $MODEL_SERVING_CHARTS (a folder of <name>-<version>.tgz), or ../shared/charts beside the project;
  2. the download cache (~/.cache/model-serving/charts);
  3. the chart's repository, pulled into that cache (needs network access).

A chart found nowhere raises `ChartUnavailable`; tests skip on it, or fail when
REQUIRE_SHARED is set (CI sets it: there, a chart must never be skipped).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra.settings import PROJECT_DIR
from review.records import ResourceRecord, Synthesis

CHART_TYPES = ("kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Release")
SHARED_CHARTS = PROJECT_DIR.parent / "shared" / "charts"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "model-serving" / "charts"
# Kinds without a namespace; every other rendered object lands in the release's namespace.
CLUSTER_SCOPED = frozenset({
    "APIService", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "IngressClass",
    "MutatingWebhookConfiguration", "Namespace", "PersistentVolume", "PriorityClass", "StorageClass",
    "ValidatingWebhookConfiguration", "CSIDriver",
})


class ChartUnavailable(Exception):
    """No archive of a pinned chart here, and its repository cannot be reached."""


def chart_dirs() -> list[Path]:
    configured = os.environ.get("MODEL_SERVING_CHARTS")
    return [Path(configured)] if configured else [SHARED_CHARTS]


def archive(name: str, version: str, repository: str) -> Path:
    filename = f"{name}-{version}.tgz"
    for folder in [*chart_dirs(), CACHE_DIR]:
        if (folder / filename).is_file():
            return folder / filename
    import helm_python

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        if repository.startswith("oci://"):
            helm_python.pull(f"{repository}/{name}", version=version, destination=CACHE_DIR)
        else:
            helm_python.pull(name, repo_url=repository, version=version, destination=CACHE_DIR)
    except helm_python.HelmError as error:
        searched = ", ".join(str(folder) for folder in chart_dirs())
        raise ChartUnavailable(f"chart {name} {version} is not in {searched} or {CACHE_DIR}, and pulling it "
                               f"from {repository} failed: {error}") from None
    return CACHE_DIR / filename


@cache
def _load(path: Path) -> Any:
    """A loaded chart (immutable, safe to share)."""
    import helm_python

    return helm_python.Chart.load(path)


def load_chart(name: str, version: str, repository: str) -> Any:
    chart = _load(archive(name, version, repository))
    if (chart.name, chart.version) != (name, version):
        raise ChartUnavailable(f"the archive for {name} {version} holds {chart.name} {chart.version}")
    return chart


@cache
def _crds(chart: Any) -> tuple[dict[str, Any], ...]:
    return tuple(document for crd in chart.crds for document in _documents(crd["data"]))


def chart_crds(chart: Any) -> list[dict[str, Any]]:
    """The CRDs a chart ships (they do not depend on values: parsed once per chart, shared: read only)."""
    return list(_crds(chart))


@dataclass(frozen=True)
class RenderedChart:
    """One chart installed by the program, rendered: its objects (List items expanded, namespaces
    filled in as the install would) and the CRDs of its crds/ that the install declares (none with
    skipCrds; CRDs a chart keeps in templates/ are among its objects)."""

    record: ResourceRecord
    release_name: str
    namespace: str
    objects: list[dict[str, Any]]
    crds: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        matches = [obj for obj in self.of_kind(kind) if name is None or obj["metadata"]["name"] == name]
        if len(matches) != 1:
            raise LookupError(f"{self.record.name}: expected one {kind} {name or ''}, found "
                              f"{[obj['metadata']['name'] for obj in matches]}")
        return matches[0]


class _ManifestLoader(yaml.CSafeLoader):
    """YAML as Kubernetes reads it, parsed by libyaml (CRDs run to megabytes): a bare `=` is the
    string "=" (YAML 1.1 reads it as the `value` type, which PyYAML cannot construct; the
    Prometheus rules in charts use it)."""


def _value_as_string(loader: yaml.CSafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


def _documents(text: str) -> Iterator[dict[str, Any]]:
    for document in yaml.load_all(text, Loader=_ManifestLoader):
        if not isinstance(document, dict):
            continue
        if document.get("kind") == "List":
            yield from document.get("items") or []
        else:
            yield document


def chart_source(record: ResourceRecord) -> tuple[str, str]:
    """(chart name, repository) of a chart resource: a name with repositoryOpts, or an OCI reference
    `oci://<registry path>/<name>` (whose archive is <name>-<version>.tgz all the same)."""
    chart = str(record.inputs["chart"])
    if chart.startswith("oci://"):
        repository, name = chart.rsplit("/", 1)
        return name, repository
    return chart, str(record.inputs["repositoryOpts"]["repo"])


def release_name(record: ResourceRecord) -> str:
    """helm.v3.Release takes `name`; helm.v4.Chart names the release after the resource unless told."""
    return str(record.inputs.get("name") or record.name)


def render(record: ResourceRecord, *, upgrade: bool = False, values: dict[str, Any] | None = None) -> RenderedChart:
    """Render a synthesized chart resource. `upgrade` renders as `helm upgrade` would (revision 2);
    `values` replaces the program's values (to show what a change would do)."""
    inputs = record.inputs
    chart_name, repository = chart_source(record)
    chart = load_chart(chart_name, str(inputs["version"]), repository)
    namespace = str(inputs.get("namespace") or "default")
    name = release_name(record)
    manifests = chart.render(inputs.get("values") if values is None else values, name=name, namespace=namespace,
                             revision=2 if upgrade else 1, is_install=not upgrade, is_upgrade=upgrade)
    objects = [document for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt")
               for document in _documents(text)]
    shipped = chart_crds(chart)
    cluster_scoped = CLUSTER_SCOPED | {crd["spec"]["names"]["kind"] for crd in shipped
                                       if crd["spec"]["scope"] == "Cluster"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            obj["metadata"].setdefault("namespace", namespace)
    # skipCrds leaves the chart's crds/ out of the install, as helm.v4.Chart does.
    crds = [] if inputs.get("skipCrds") else shipped
    return RenderedChart(record=record, release_name=name, namespace=namespace, objects=objects, crds=crds)


def chart_records(synthesis: Synthesis) -> list[ResourceRecord]:
    return [record for record in synthesis.resources if record.type in CHART_TYPES]


def render_all(synthesis: Synthesis) -> list[RenderedChart]:
    return [render(record) for record in chart_records(synthesis)]
