"""Every version the program pins, in one place.

Python packages are pinned in requirements*.txt and the server's base image in
app/Dockerfile; everything the Pulumi program itself deploys is pinned here, each with
where it was checked. `aws eks describe-addon-versions --kubernetes-version <v>
--addon-name <name>` (needs AWS credentials) is the definitive check for an add-on build;
the sources below are public pages and configs seen in late 2026.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesRelease:
    """A Kubernetes minor version we support on EKS, with the add-ons pinned for it."""

    # EKS managed add-on versions (`aws eks describe-addon-versions --kubernetes-version <v>`).
    eks_addons: dict[str, str]
    # Cluster Autoscaler must run the release matching the cluster's minor version
    # (https://github.com/kubernetes/autoscaler/tree/master/cluster-autoscaler#releases).
    cluster_autoscaler_image_tag: str
    # The EKS AMI release Karpenter's nodes boot: `al2023@<release>` resolves, for the cluster's
    # Kubernetes version, to the standard or NVIDIA AL2023 AMI of that release. Never `@latest`: each
    # new AMI would drift, and so replace, every node (https://karpenter.sh/v1.14/concepts/nodeclasses/).
    karpenter_ami_alias: str


# Only versions in EKS standard support with pinned add-ons: 1.35 (standard support until
# 2027-03-27; Pulumi.yaml's default) and 1.36 (offered since mid-2026). 1.34 leaves standard
# support on 2026-12-02.
# Sources: kube-proxy and CoreDNS from the EKS user guide's add-on pages (docs.aws.amazon.com/eks/
# latest/userguide/managing-kube-proxy.html, managing-coredns.html); vpc-cni, the pod identity
# agent and the CSI drivers from public Terraform/CDK configs of running clusters; the autoscaler
# from the kubernetes/autoscaler release tags cluster-autoscaler-1.35.2 and -1.36.1.
# eks-node-monitoring-agent v1.6.6-eksbuild.1: the agent's release v1.6.6
# (https://github.com/aws/eks-node-monitoring-agent/releases/tag/v1.6.6), seen running on a 1.35
# cluster and as the default version for 1.36 in public configs.
# The AMI release v20260714, the newest whose notes list both versions' AMIs: its CHANGELOG entry
# (https://github.com/awslabs/amazon-eks-ami/releases/tag/v20260714) names
# amazon-eks-node-al2023-x86_64-{standard,nvidia}-1.35-v20260714 (release 1.35.6-20260714) and
# ...-1.36-v20260714 (1.36.2-20260714). Move it forward deliberately: every node is replaced (drift),
# within the NodePools' disruption budgets.
KUBERNETES_RELEASES: dict[str, KubernetesRelease] = {
    "1.35": KubernetesRelease(
        eks_addons={
            "vpc-cni": "v1.21.1-eksbuild.8",
            "kube-proxy": "v1.35.3-eksbuild.13",
            "eks-pod-identity-agent": "v1.3.10-eksbuild.3",
            "coredns": "v1.14.3-eksbuild.3",
            "aws-ebs-csi-driver": "v1.55.0-eksbuild.1",
            "aws-efs-csi-driver": "v3.4.1-eksbuild.1",
            "eks-node-monitoring-agent": "v1.6.6-eksbuild.1",
        },
        cluster_autoscaler_image_tag="v1.35.2",
        karpenter_ami_alias="al2023@v20260714",
    ),
    "1.36": KubernetesRelease(
        eks_addons={
            "vpc-cni": "v1.22.4-eksbuild.3",
            "kube-proxy": "v1.36.0-eksbuild.14",
            "eks-pod-identity-agent": "v1.3.10-eksbuild.3",
            "coredns": "v1.14.3-eksbuild.3",
            "aws-ebs-csi-driver": "v1.63.1-eksbuild.1",
            "aws-efs-csi-driver": "v3.4.1-eksbuild.1",
            "eks-node-monitoring-agent": "v1.6.6-eksbuild.1",
        },
        cluster_autoscaler_image_tag="v1.36.1",
        karpenter_ami_alias="al2023@v20260714",
    ),
}


@dataclass(frozen=True)
class HelmChart:
    name: str
    version: str
    repository: str  # a chart repository's URL, or an OCI registry path (oci://...)

    @property
    def oci(self) -> bool:
        return self.repository.startswith("oci://")


HELM_CHARTS: dict[str, HelmChart] = {
    # ingress-nginx is retired (maintenance ended March 2026); on EKS the ALB controller is the ingress.
    "aws-load-balancer-controller": HelmChart(
        "aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts"),
    "cluster-autoscaler": HelmChart("cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler"),
    "metrics-server": HelmChart("metrics-server", "3.13.1", "https://kubernetes-sigs.github.io/metrics-server/"),
    # Observability (infra/observability/). kube-prometheus-stack bundles kube-state-metrics 8.4.0,
    # prometheus-node-exporter 4.56.1 and grafana 12.11.1 (now from grafana-community/helm-charts).
    "kube-prometheus-stack": HelmChart(
        "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"),
    "dcgm-exporter": HelmChart("dcgm-exporter", "4.8.2", "https://nvidia.github.io/dcgm-exporter/helm-charts"),
    "aws-for-fluent-bit": HelmChart("aws-for-fluent-bit", "0.2.0", "https://aws.github.io/eks-charts"),
    # Release control (infra/platform/argo_rollouts.py) and traffic-driven scaling (infra/platform/keda.py).
    "argo-rollouts": HelmChart("argo-rollouts", "2.41.0", "https://argoproj.github.io/argo-helm"),
    "keda": HelmChart("keda", "2.20.2", "https://kedacore.github.io/charts"),
    # Node provisioning (infra/platform/karpenter.py). Karpenter 1.14 supports Kubernetes 1.35 (from
    # 1.9) and 1.36 (from 1.13): https://karpenter.sh/v1.14/upgrading/compatibility/. Published only as
    # OCI charts; the CRD chart is installed first because Helm never upgrades a chart's crds/.
    "karpenter-crd": HelmChart("karpenter-crd", "1.14.1", "oci://public.ecr.aws/karpenter"),
    "karpenter": HelmChart("karpenter", "1.14.1", "oci://public.ecr.aws/karpenter"),
}

# The chart argo-rollouts 2.41.0 ships app v1.9.0; v1.9.1 fixes CVE-2026-35469
# (https://github.com/argoproj/argo-rollouts/releases/tag/v1.9.1).
ARGO_ROLLOUTS_IMAGE_TAG = "v1.9.1"

# Images the program runs without a chart. The NVIDIA device plugin is one DaemonSet: its chart
# (nvidia-device-plugin 0.20.0) also renders a privileged MPS control daemon with no switch to
# turn it off, so the program declares the plugin itself (infra/platform/gpu.py).
NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
