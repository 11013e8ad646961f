"""The few facts every component needs about its stack, and nothing else: components take this
plus the fields they use, never the whole StackSettings (as terraform-aws-eks's modules take
plain variables)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StackIdentity:
    name: str  # prefix of every physical name; also the EKS cluster's name
    project: str
    tags: dict[str, str]  # carried by every taggable AWS resource
    partition: str  # aws, aws-cn or aws-us-gov
    region: str
    production: bool  # protect stateful resources, refuse what prod must not do
