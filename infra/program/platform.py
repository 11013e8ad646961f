"""The platform inside the cluster: the ingress controller (the AWS Load Balancer Controller), the
node provisioner (Karpenter and its pools, or the cluster autoscaler: never both), metrics-server,
release control (Argo Rollouts), traffic-driven scaling (KEDA), the NVIDIA device plugin (with a GPU
pool) and storage."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.compute.karpenter import KarpenterPools, KarpenterPoolsArgs
from infra.platform.argo_rollouts import ArgoRollouts, ArgoRolloutsArgs
from infra.platform.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from infra.platform.gpu import GpuSupport, GpuSupportArgs
from infra.platform.karpenter import Karpenter, KarpenterArgs
from infra.platform.keda import Keda, KedaArgs
from infra.platform.load_balancer_controller import LoadBalancerController, LoadBalancerControllerArgs
from infra.platform.metrics_server import MetricsServer, MetricsServerArgs
from infra.platform.storage import Storage, StorageArgs
from infra.program.foundation import Foundation
from infra.settings import StackSettings
from infra.versions import KUBERNETES_RELEASES


@dataclass(frozen=True)
class Platform:
    ingress_class: str
    # The ALB controller's webhooks reject what they cannot reach (failurePolicy: Fail): whatever
    # creates a Service, an Ingress or a pod in a namespace they watch waits for these.
    webhooks_ready: tuple[pulumi.Resource, ...]
    shared_storage_class: str
    # A volume of the shared storage class can be mounted once these exist.
    shared_storage_ready: tuple[pulumi.Resource, ...]
    # The workload's Rollout, AnalysisTemplates and ScaledObject need these controllers' CRDs and webhooks,
    # and its pods a pool to be provisioned on (Karpenter's NodePools).
    release_control_ready: tuple[pulumi.Resource, ...]


def build(settings: StackSettings, foundation: Foundation) -> Platform:
    identity, cluster = settings.identity, foundation.cluster
    ingress = LoadBalancerController("ingress", LoadBalancerControllerArgs(
        identity=identity, system_pool=cluster.system_pool, waf_enabled=settings.model_service.waf.enabled,
        cluster_name=cluster.name, account_id=cluster.account_id, vpc_id=foundation.network.vpc_id,
        wait_for=cluster.nodes_ready), opts=cluster.on_cluster)
    webhooks_ready = (*cluster.nodes_ready, ingress.release)
    capacity = provisioner(settings, foundation, webhooks_ready)
    MetricsServer("metrics", MetricsServerArgs(system_pool=cluster.system_pool, wait_for=webhooks_ready),
                  opts=cluster.on_cluster)
    release_control = ArgoRollouts("rollouts", ArgoRolloutsArgs(
        identity=identity, system_pool=cluster.system_pool, cluster_name=cluster.name, wait_for=webhooks_ready),
        opts=cluster.on_cluster)
    keda = Keda("keda", KedaArgs(system_pool=cluster.system_pool, wait_for=webhooks_ready), opts=cluster.on_cluster)
    if cluster.has_gpu_pool:
        GpuSupport("gpu", GpuSupportArgs(wait_for=cluster.nodes_ready), opts=cluster.on_cluster)
    storage = Storage("storage", StorageArgs(
        identity=identity, retain_data_on_destroy=settings.retain_data_on_destroy,
        vpc_id=foundation.network.vpc_id, vpc_cidr=foundation.network.vpc_cidr,
        private_subnet_ids=foundation.network.private_subnet_ids_per_zone), opts=cluster.on_cluster)
    return Platform(ingress_class=ingress.ingress_class, webhooks_ready=webhooks_ready,
                    shared_storage_class=storage.shared_storage_class,
                    shared_storage_ready=tuple(storage.mount_targets),
                    release_control_ready=(release_control.chart, keda.chart, *capacity))


def provisioner(settings: StackSettings, foundation: Foundation,
                webhooks_ready: tuple[pulumi.Resource, ...]) -> tuple[pulumi.Resource, ...]:
    """Karpenter and its NodePools, or the cluster autoscaler over the node groups; returns the pools pods
    wait for (node groups exist already)."""
    identity, cluster = settings.identity, foundation.cluster
    if not settings.karpenter:
        ClusterAutoscaler("autoscaler", ClusterAutoscalerArgs(
            identity=identity, kubernetes_version=cluster.kubernetes_version, system_pool=cluster.system_pool,
            cluster_name=cluster.name, account_id=cluster.account_id, wait_for=webhooks_ready),
            opts=cluster.on_cluster)
        return ()
    # Its chart creates a Service, which the load balancer controller's webhooks see.
    karpenter = Karpenter("karpenter", KarpenterArgs(
        identity=identity, system_pool=cluster.system_pool, cluster_name=cluster.name,
        cluster_endpoint=cluster.endpoint, cluster_security_group_id=cluster.security_group_id,
        account_id=cluster.account_id, wait_for=webhooks_ready), opts=cluster.on_cluster)
    pools = KarpenterPools("karpenter-pools", KarpenterPoolsArgs(
        identity=identity, node_pools=settings.node_pools,
        ami_alias=KUBERNETES_RELEASES[settings.kubernetes_version].karpenter_ami_alias,
        node_role_name=karpenter.node_role_name,
        wait_for=[karpenter.crd_chart, karpenter.chart, karpenter.node_access]), opts=cluster.on_cluster)
    return tuple(pools.node_pools)
