"""The whole stack, in order: settings → network → cluster → node pools → add-ons → platform →
registry and image → model service."""

import pulumi
import pulumi_aws as aws

from infra.addons import AFTER_NODES, BEFORE_NODES, EksAddons, EksAddonsArgs
from infra.cluster import Cluster, ClusterArgs
from infra.dns_name import DnsName, DnsNameArgs
from infra.front_door import FrontDoor, FrontDoorArgs
from infra.model_image import AppArtifact, ModelImage, ModelImageArgs
from infra.model_service import ModelService, ModelServiceArgs
from infra.network import Network, NetworkArgs
from infra.node_pools import NodePool, NodePoolArgs
from infra.observability.access_logs import AccessLogs, AccessLogsArgs
from infra.observability.alerting import Alerting, AlertingArgs
from infra.observability.logs import ContainerLogs, ContainerLogsArgs
from infra.observability.metrics import MetricsStack, MetricsStackArgs
from infra.observability.model_monitoring import ModelMonitoring, ModelMonitoringArgs
from infra.platform.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from infra.platform.gpu import GpuSupport, GpuSupportArgs
from infra.platform.load_balancer_controller import LoadBalancerController, LoadBalancerControllerArgs
from infra.platform.metrics_server import MetricsServer, MetricsServerArgs
from infra.platform.storage import Storage, StorageArgs
from infra.registry import Registry, RegistryArgs
from infra.settings import settings_from_runtime

# Both raise, naming every problem, before any resource exists.
settings = settings_from_runtime()
app = AppArtifact.inspect()

# Every AWS resource uses this explicit provider; the stack files disable the default one.
aws_provider = aws.Provider("aws", region=settings.region)
uses_aws = pulumi.ResourceOptions(providers=[aws_provider])

identity = settings.identity
network = Network("network", NetworkArgs(identity=identity, vpc_cidr=settings.vpc_cidr,
                                         subnet_cidrs=settings.subnet_cidrs, nat_gateways=settings.nat_gateways,
                                         availability_zones=settings.availability_zones, provider=aws_provider),
                  opts=uses_aws)
cluster = Cluster("cluster", ClusterArgs(
    identity=identity, kubernetes_version=settings.kubernetes_version,
    endpoint_public_access_cidrs=settings.endpoint_public_access_cidrs,
    admin_principal_arns=settings.admin_principal_arns,
    control_plane_log_retention_days=settings.control_plane_log_retention_days, network=network,
    provider=aws_provider), opts=uses_aws)
networking_addons = EksAddons(
    "networking", EksAddonsArgs(identity=identity, kubernetes_version=settings.kubernetes_version,
                                cluster_name=cluster.name, addon_names=BEFORE_NODES),
    opts=uses_aws)
node_pools = {
    pool_name: NodePool(
        f"pool-{pool_name}",
        NodePoolArgs(identity=identity, pool_name=pool_name, pool=pool, cluster_name=cluster.name,
                     node_role_arn=cluster.node_role_arn, subnet_ids=network.private_subnet_ids,
                     wait_for=[networking_addons]),
        opts=uses_aws,
    )
    for pool_name, pool in settings.node_pools.items()
}
core_addons = EksAddons(
    "core", EksAddonsArgs(identity=identity, kubernetes_version=settings.kubernetes_version,
                          cluster_name=cluster.name, addon_names=AFTER_NODES, wait_for=list(node_pools.values())),
    opts=uses_aws)

# The Kubernetes layer talks to this cluster only, through the provider built from its kubeconfig.
on_cluster = pulumi.ResourceOptions(providers=[aws_provider, cluster.kubernetes_provider])
nodes_ready = [*node_pools.values(), core_addons]
ingress = LoadBalancerController(
    "ingress", LoadBalancerControllerArgs(identity=identity, system_pool=settings.system_pool,
                                          waf_enabled=settings.model_service.waf.enabled, cluster_name=cluster.name,
                                          account_id=cluster.account_id, vpc_id=network.vpc_id, wait_for=nodes_ready),
    opts=on_cluster)
# The controller's webhooks reject what they cannot reach (failurePolicy: Fail): whatever creates
# a Service, an Ingress or a pod in a namespace they watch waits until its release is ready.
webhooks_ready = [*nodes_ready, ingress.release]
ClusterAutoscaler(
    "autoscaler", ClusterAutoscalerArgs(identity=identity, kubernetes_version=settings.kubernetes_version,
                                        system_pool=settings.system_pool, cluster_name=cluster.name,
                                        account_id=cluster.account_id, wait_for=webhooks_ready), opts=on_cluster)
MetricsServer("metrics", MetricsServerArgs(system_pool=settings.system_pool, wait_for=webhooks_ready), opts=on_cluster)
if settings.has_gpu_pool:
    GpuSupport("gpu", GpuSupportArgs(wait_for=nodes_ready), opts=on_cluster)
storage = Storage(
    "storage", StorageArgs(identity=identity, retain_data_on_destroy=settings.retain_data_on_destroy,
                           vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr,
                           private_subnet_ids=network.private_subnet_ids_per_zone), opts=on_cluster)

registry = Registry("registry", RegistryArgs(identity=identity, keep_images=settings.ecr_keep_images,
                                             scanning=settings.ecr_scanning), opts=uses_aws)
image = ModelImage(
    "image", ModelImageArgs(artifact=app, repository_url=registry.repository_url,
                            registry_id=registry.registry_id, provider=aws_provider), opts=uses_aws)
# Observability (on unless observability.enabled is false): metrics and alerts, logs, access logs.
observed = settings.observability.enabled
if observed:
    observability = settings.observability
    alerting = Alerting("alerting", AlertingArgs(identity=identity, alert_emails=observability.alert_emails,
                                                 cluster_name=cluster.name), opts=uses_aws)
    metrics_stack = MetricsStack(
        "monitoring", MetricsStackArgs(observability=observability, region=settings.region,
                                       system_pool=settings.system_pool, has_gpu_pool=settings.has_gpu_pool,
                                       alert_topic_arn=alerting.topic_arn,
                                       wait_for=[*webhooks_ready, alerting.identity]), opts=on_cluster)
    container_logs = ContainerLogs(
        "logs", ContainerLogsArgs(identity=identity, retention_days=observability.log_retention_days,
                                  cluster_name=cluster.name, wait_for=webhooks_ready), opts=on_cluster)
    access_logs = AccessLogs(
        "access-logs", AccessLogsArgs(identity=identity, retention_days=observability.access_log_retention_days,
                                      retain_data_on_destroy=settings.retain_data_on_destroy,
                                      account_id=cluster.account_id, provider=aws_provider), opts=uses_aws)

front_door = FrontDoor("front-door", FrontDoorArgs(identity=identity, endpoint=settings.model_service,
                                                   provider=aws_provider), opts=uses_aws)
model_service = ModelService(
    "model",
    ModelServiceArgs(identity=identity, model=settings.model_service,
                     retain_data_on_destroy=settings.retain_data_on_destroy, image_ref=image.image_ref,
                     model_sha256=app.model_sha256,
                     vpc_cidr=network.vpc_cidr, shared_storage_class=storage.shared_storage_class,
                     ingress_class=ingress.ingress_class, certificate_arn=front_door.certificate_arn,
                     web_acl_arn=front_door.web_acl_arn,
                     access_log_bucket=access_logs.bucket_name if observed else None,
                     wait_for=[*webhooks_ready, *storage.mount_targets]),
    opts=on_cluster)
if observed:
    # Its custom resources need the metrics stack's CRDs, and the PodMonitor the model's namespace.
    ModelMonitoring("model-monitoring", ModelMonitoringArgs(
        identity=identity, observability=observability, has_gpu_pool=settings.has_gpu_pool,
        wait_for=[metrics_stack.stack_chart, model_service]), opts=on_cluster)
if settings.model_service.domain is not None and front_door.zone_id is not None:
    DnsName("dns", DnsNameArgs(domain=settings.model_service.domain, zone_id=front_door.zone_id,
                               load_balancer_hostname=model_service.load_balancer_hostname,
                               provider=aws_provider), opts=uses_aws)

pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("ecrRepositoryUrl", registry.repository_url)
pulumi.export("nodePools", {
    pool_name: {
        "nodeGroupName": node_pools[pool_name].node_group_name,
        "instanceTypes": list(pool.instance_types),
        "gpu": pool.gpu,
        "capacityType": pool.capacity_type,
        "minSize": pool.min_size,
        "maxSize": pool.max_size,
    }
    for pool_name, pool in settings.node_pools.items()
})
pulumi.export("modelUrl", model_service.url)
pulumi.export("modelName", settings.model_service.name)
pulumi.export("imageRef", image.image_ref)
pulumi.export("ingressClass", ingress.ingress_class)
if observed:
    pulumi.export("grafanaAdminPassword", metrics_stack.grafana_admin_password)
    pulumi.export("alertTopicArn", alerting.topic_arn)
    pulumi.export("containerLogGroup", container_logs.log_group_name)
    pulumi.export("accessLogBucket", access_logs.bucket_name)
