"""The integration tests' two backends: embedded processes (default) or containers.
Without a Docker daemon the containers backend fails at once, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import BackendUnavailable, services_for_tests, test_backend


def test_embedded_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_TEST_BACKEND", raising=False)
    assert test_backend() == "embedded"
    monkeypatch.setenv("OMNI_TEST_BACKEND", "containers")
    assert test_backend() == "containers"


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_TEST_BACKEND", "vagrant")
    with pytest.raises(ValueError, match="use one of embedded, containers"):
        test_backend()


def test_containers_without_a_docker_daemon_say_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMNI_TEST_BACKEND", "containers")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    with pytest.raises(BackendUnavailable, match="needs a running Docker daemon"):
        services_for_tests(tmp_path)
