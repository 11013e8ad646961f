"""Alert email subscriptions: one resource per address, whose names never collide."""

from __future__ import annotations

import itertools

import pytest

from infra.observability.alerting import subscription_name
from tests.support.stacks import synthesized_with

# Addresses that ran together under the old naming (every other run of characters became one '-').
LOOKALIKES = ["on.call@example.com", "on-call@example.com", "on_call@example.com", "on--call@example.com",
              "on-2d-call@example.com", "oncall@example.com", "on.call@example.co", "x@y.z", "x-40-y.z@a.b"]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(LOOKALIKES, 2)))
def test_different_addresses_get_different_resource_names(first: str, second: str) -> None:
    assert subscription_name(first) != subscription_name(second)


def test_addresses_that_differ_only_in_punctuation_are_two_subscriptions() -> None:
    emails = ["on.call@example.com", "on-call@example.com"]
    synthesis = synthesized_with("prod", {"observability": {"alertEmails": emails}})
    subscriptions = synthesis.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted(record.get("endpoint") for record in subscriptions) == sorted(emails)
    assert len({record.urn for record in subscriptions}) == 2
    topic = synthesis.one("aws:sns/topic:Topic")
    assert all(record.property_dependencies["topic"] == [topic.urn] and record.get("protocol") == "email"
               for record in subscriptions)
