"""Every version the program pins, in one place.

Python packages are pinned in requirements*.txt and the server's base image in
app/Dockerfile; everything the Pulumi program itself deploys is pinned here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesRelease:
    """A Kubernetes minor version we support on EKS, with the add-ons pinned for it."""

    standard_support_ends: str
    # EKS managed add-on versions (`aws eks describe-addon-versions --kubernetes-version <v>`).
    eks_addons: dict[str, str]
    # Cluster Autoscaler must run the release matching the cluster's minor version
    # (https://github.com/kubernetes/autoscaler/tree/master/cluster-autoscaler#releases).
    cluster_autoscaler_image_tag: str


# Only versions in EKS standard support with verified add-on pins. 1.34 leaves standard
# support on 2026-12-02, after which the STANDARD upgrade policy upgrades it anyway.
KUBERNETES_RELEASES: dict[str, KubernetesRelease] = {
    "1.35": KubernetesRelease(
        standard_support_ends="2027-03-27",
        eks_addons={
            "vpc-cni": "v1.21.1-eksbuild.3",
            "kube-proxy": "v1.35.0-eksbuild.2",
            "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
            "coredns": "v1.13.2-eksbuild.1",
            "aws-ebs-csi-driver": "v1.55.0-eksbuild.1",
            "aws-efs-csi-driver": "v3.0.1-eksbuild.1",
        },
        cluster_autoscaler_image_tag="v1.35.2",
    ),
}

DEFAULT_KUBERNETES_VERSION = "1.35"


@dataclass(frozen=True)
class HelmChart:
    name: str
    version: str
    repository: str


HELM_CHARTS: dict[str, HelmChart] = {
    # ingress-nginx is retired (maintenance ended March 2026); on EKS the ALB controller is the ingress.
    "aws-load-balancer-controller": HelmChart(
        "aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts"),
    "cluster-autoscaler": HelmChart("cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler"),
    "nvidia-device-plugin": HelmChart("nvidia-device-plugin", "0.20.0", "https://nvidia.github.io/k8s-device-plugin"),
    "metrics-server": HelmChart("metrics-server", "3.13.1", "https://kubernetes-sigs.github.io/metrics-server/"),
}
