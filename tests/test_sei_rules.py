"""The pure rules of delivery: what each SEI answer means, and how long to wait."""

from __future__ import annotations

import pytest

from poller.sei import BACKOFF_MAX, classify, guid_from, next_delay, parse_retry_after


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "sent"),
        (202, "sent"),
        (400, "dead"),
        (404, "dead"),
        (422, "dead"),
        (401, "auth"),
        (403, "auth"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_classify(status: int, kind: str) -> None:
    body = '{"response_type": "accepted", "payload": "ok"}' if status < 300 else "body"
    assert classify(status, {}, body).kind == kind


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, {"Content-Type": "text/html"}, "<html><title>Sign in</title></html>"),
        (200, {}, "<!DOCTYPE html><html><head><title>Portal</title>"),
        (202, {}, ""),
        (204, {}, ""),
        (302, {"Location": "https://sso.example.com/login"}, ""),
    ],
)
def test_what_is_not_seis_acceptance_halts_delivery(
    status: int, headers: dict[str, str], body: str
) -> None:
    """SEI accepts with JSON; a page, an empty answer or a redirect is someone else."""
    outcome = classify(status, headers, body, "https://app.harness.io/sei/api/v1/custom-cicd")
    assert outcome.kind == "not_sei"


def test_retry_after_honoured_and_capped() -> None:
    assert classify(429, {"Retry-After": "7"}, "").retry_after == 7.0
    assert parse_retry_after("999999") == 3600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert next_delay(5, retry_after=7.0) == 7.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    first = [next_delay(1) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in first)
    assert len(set(first)) > 100  # jittered
    assert all(4.0 <= next_delay(3) <= 8.0 for _ in range(50))
    assert all(next_delay(40) <= BACKOFF_MAX for _ in range(50))


def test_dead_letter_keeps_the_body() -> None:
    assert "missing pipeline" in classify(400, {}, '{"error":"missing pipeline"}').detail


@pytest.mark.parametrize(
    "body",
    [
        '"5f0c5a3e-1b2c-4d5e-8f90-1234567890ab"',
        '{"id": "5f0c5a3e-1b2c-4d5e-8f90-1234567890ab"}',
        '{"data": {"instance": {"guid": "5f0c5a3e-1b2c-4d5e-8f90-1234567890ab"}}}',
        "5f0c5a3e-1b2c-4d5e-8f90-1234567890ab",
    ],
)
def test_guid_from_answer(body: str) -> None:
    assert guid_from(body) == "5f0c5a3e-1b2c-4d5e-8f90-1234567890ab"


def test_guid_absent() -> None:
    assert guid_from('{"ok": true}') is None
