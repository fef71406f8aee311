"""Our FID Inception and its preprocessing against pytorch-fid's reference.

Both networks get the same randomly initialised weights, saved in the
reference's key layout, so the checks cover architecture, key names and
preprocessing without the 92 MB weight file.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from workbench.core.fid import weights as fid_weights
from workbench.core.fid.inception import FIDInceptionV3, load_fid_inception, prepare_images

pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
torchvision = pytest.importorskip("torchvision")

MAX_RELATIVE_DIFFERENCE = 1e-4


def _random_reference_state() -> dict[str, torch.Tensor]:
    # torchvision's Inception-v3 has the same parameter names and shapes as the
    # FID variant. Its batch norm statistics are estimated on a few noise
    # images so activations stay near unit scale through all 94 layers, which
    # makes the comparison meaningful instead of one of overflowed values.
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=True
    )
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration pass
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 299, 299) * 2 - 1)
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Return (reference InceptionV3([3]), ours), both holding the same random weights."""
    state = _random_reference_state()
    weight_file = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(state, weight_file)

    patcher = pytest.MonkeyPatch()
    patcher.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    try:
        reference = pytorch_fid_inception.InceptionV3([3]).eval()
    finally:
        patcher.undo()
    ours = load_fid_inception(weight_file)
    return reference, ours


def _max_relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().item()
    return (ours - reference).abs().max().item() / scale


def _reference_features(reference, images_01: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return reference(images_01)[0].flatten(1)


def _our_features(ours, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ours(prepare_images(images))


def test_inception_uint8_colour_matches_reference(networks):
    reference, ours = networks
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    expected = _reference_features(reference, images.float() / 255)  # ToTensor's scaling
    actual = _our_features(ours, images)
    assert actual.shape == (2, 2048)
    assert expected.abs().max() > 0.1
    assert _max_relative_difference(actual, expected) < MAX_RELATIVE_DIFFERENCE


def test_inception_float_colour_matches_reference(networks):
    reference, ours = networks
    images = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected = _reference_features(reference, (images + 1) / 2)
    actual = _our_features(ours, images)
    assert _max_relative_difference(actual, expected) < MAX_RELATIVE_DIFFERENCE


def test_inception_uint8_grayscale_matches_reference(networks):
    reference, ours = networks
    images = torch.randint(0, 256, (2, 1, 28, 28), generator=torch.Generator().manual_seed(3),
                           dtype=torch.uint8)
    rgb = images.expand(-1, 3, -1, -1).float() / 255  # PIL's convert("RGB") of an L image
    expected = _reference_features(reference, rgb)
    actual = _our_features(ours, images)
    assert _max_relative_difference(actual, expected) < MAX_RELATIVE_DIFFERENCE


def test_inception_features_differ_between_images(networks):
    _, ours = networks
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(4),
                           dtype=torch.uint8)
    features = _our_features(ours, images)
    assert _max_relative_difference(features[0:1], features[1:2]) > 1e-2


def test_prepare_images_ranges_agree():
    images = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(5),
                           dtype=torch.uint8)
    from_uint8 = prepare_images(images)
    from_float = prepare_images(images.float() / 127.5 - 1)
    assert from_uint8.shape == (3, 3, 299, 299)
    assert torch.allclose(from_uint8, from_float, atol=1e-6)
    assert from_uint8.min() >= -1
    assert from_uint8.max() <= 1


def test_prepare_images_rejects_bad_shape():
    with pytest.raises(ValueError, match="1 or 3"):
        prepare_images(torch.zeros(2, 2, 28, 28))


def test_load_rejects_foreign_keys(tmp_path):
    state = FIDInceptionV3().state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "foreign.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_fid_inception(path)


def test_weights_missing_raises_with_advice(tmp_path, monkeypatch):
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(fid_weights.WeightsNotFoundError) as caught:
        fid_weights.resolve_weights()
    message = str(caught.value)
    assert str(tmp_path / "hub" / "checkpoints" / fid_weights.WEIGHTS_FILE_NAME) in message
    assert fid_weights.WEIGHTS_ENV_VAR in message
    assert "--extractor domain" in message
    assert "\n" not in message


def test_weights_env_var_used(tmp_path, monkeypatch):
    fake = tmp_path / "inception.pth"
    fake.write_bytes(b"not the weights")
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV_VAR, str(fake))
    with pytest.raises(fid_weights.WeightsNotFoundError, match="SHA-256"):
        fid_weights.resolve_weights()


def test_weights_hash_prefix_accepted(tmp_path, monkeypatch):
    content = b"x" * 10
    digest = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(fid_weights, "WEIGHTS_SHA256_PREFIX", digest[:8])
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    assert fid_weights.resolve_weights(path) == path
    assert fid_weights.verify_weights(path) == digest


def test_weights_download_only_on_request(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        calls.append((url, destination, hash_prefix))
        with open(destination, "wb") as handle:
            handle.write(b"downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setattr(fid_weights, "WEIGHTS_SHA256_PREFIX",
                        hashlib.sha256(b"downloaded").hexdigest()[:8])
    target = tmp_path / "sub" / "weights.pth"
    with pytest.raises(fid_weights.WeightsNotFoundError):
        fid_weights.resolve_weights(target)
    assert calls == []
    assert fid_weights.resolve_weights(target, download=True) == target
    assert calls == [(fid_weights.WEIGHTS_URL, str(target), fid_weights.WEIGHTS_SHA256_PREFIX)]
