"""The Triton HTTP client, in its default binary mode and in JSON mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.server import Server

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


@pytest.fixture
def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.get_model_metadata("iris")["inputs"][0]["shape"] == [-1, 4]


@pytest.mark.parametrize("binary", [True, False])
def test_infer(client: triton.InferenceServerClient, model: Any, binary: bool) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("predict", "predict_proba")]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="triton-1")
    expected_rows = ROWS.astype(np.float64)
    assert result.as_numpy("predict").tolist() == model.predict(expected_rows).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(expected_rows))
    assert result.get_response()["id"] == "triton-1"


def test_infer_with_all_defaults(client: triton.InferenceServerClient, model: Any) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)  # binary by default; no outputs: all of them, binary
    result = client.infer("iris", [tensor], model_version="1")
    assert result.as_numpy("predict").tolist() == model.predict(ROWS.astype(np.float64)).tolist()


def test_errors_reach_the_client_as_messages(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input-0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match="takes \\[rows, 4\\]"):
        client.infer("iris", [tensor])
