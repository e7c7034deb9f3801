"""Fixtures shared by the SDK's tests (the cluster in $KUBECONFIG, Moat installed)."""
import uuid

import pytest
from kubernetes import client, config


@pytest.fixture(scope="module")
def ns():
    """A namespace of its own for each test module, deleted with what is left in it."""
    config.load_kube_config()
    core = client.CoreV1Api()
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
