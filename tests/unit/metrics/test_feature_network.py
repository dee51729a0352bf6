"""InceptionFeatures: the sFID layer and flattening order against an independent hook, pool features
against torch-fidelity's extractor, dims and identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmlab.metrics.feature_network import FeatureNetwork, InceptionFeatures
from ldmlab.metrics.inception import build_feature_extractor, inception_weights_path
from ldmlab.metrics.reference_stats import file_digest
from ldmlab.utils.errors import ConfigError


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (3, 3, 40, 40), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def _adm_spatial(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Independently: torch-fidelity's network, a hook on the TF graph's mixed_6/conv (Mixed_6d's
    1×1 branch, after its ReLU), flattened as ADM does (NHWC, ``spatial[..., :7]`` reshaped per
    image); and its pool_3 features."""
    extractor = build_feature_extractor(inception_weights_path(), ["2048"])
    captured = []
    extractor.Mixed_6d.branch1x1.register_forward_hook(lambda module, args, out: captured.append(out.clone()))
    with torch.no_grad():
        (pool,) = extractor(images)
    (mixed_6_conv,) = captured
    assert mixed_6_conv.shape == (len(images), 192, 17, 17) and (mixed_6_conv >= 0).all()
    nhwc = mixed_6_conv.numpy().transpose(0, 2, 3, 1)
    return nhwc[..., :7].reshape(len(images), -1), pool.numpy()


def test_spatial_features_are_adms_mixed_6_conv_in_nhwc_order(images):
    expected_spatial, expected_pool = _adm_spatial(images)
    for layer in ("64", "2048"):  # a cheap FID layer still runs the network past Mixed_6d
        network = InceptionFeatures(inception_weights_path(), layer, spatial=True)
        features = network(images)
        assert features["spatial"].shape == (3, 2023) and features["spatial"].dtype == torch.float32
        np.testing.assert_array_equal(features["spatial"].numpy(), expected_spatial)
    np.testing.assert_array_equal(features["pool"].numpy(), expected_pool)


def test_dims_identity_and_protocol(images):
    weights = inception_weights_path()
    cheap = InceptionFeatures(weights, "64")
    assert isinstance(cheap, FeatureNetwork) and cheap.tag == "inception"
    assert cheap.dims() == {"pool": 64} and set(cheap(images)) == {"pool"}
    assert cheap.identity() == f"inception-v3/pool-64@{file_digest(weights)}"
    standard = InceptionFeatures(weights, "2048", spatial=True)
    assert standard.dims() == {"pool": 2048, "spatial": 2023}
    assert standard.identity() == f"inception-v3/pool3@{file_digest(weights)}"
    with pytest.raises(ConfigError, match="Inception Score"):  # the offline weights have no head
        InceptionFeatures(weights, "2048", logits=True)
    with pytest.raises(ConfigError, match="metrics.fid_feature_layer"):
        InceptionFeatures(weights, "1000")
