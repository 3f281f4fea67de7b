"""The fast inference path computes what 0.4.0's did: the network forward, the closed-form
data consistency and the head box (the network's region) against their references."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bids_boldsr.sr.tvsr.acquisition import AcquisitionModel
from bids_boldsr.sr.tvsr import common
from bids_boldsr.sr.tvsr.common import data_consistency, landweber_steps, resolve_precision
from bids_boldsr.sr.tvsr.fast_forward import fast_forward
from bids_boldsr.sr.tvsr.infer import _forward_tiled, head_box
from bids_boldsr.sr.tvsr.model import ResidualCNN


@pytest.mark.parametrize("padding,leaky", [("replicate", 0.1), ("zeros", 0.0), ("replicate", 0.0)])
def test_fast_forward_equals_the_module(padding, leaky):
    torch.manual_seed(0)
    net = ResidualCNN(1, 8, 5, padding_mode=padding, zero_init=False, leaky=leaky).eval()
    x = torch.randn(2, 1, 19, 14, 11)  # odd sizes, a batch of two
    with torch.no_grad():
        ref = net(x)
    out = fast_forward(net, x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert (out - x).abs().max() > 0.1  # the residual is not trivially zero


def test_bf16_forward_rounds_only_the_residual():
    torch.manual_seed(0)
    net = ResidualCNN(1, 8, 5, padding_mode="replicate", zero_init=False, leaky=0.1).eval()
    x = torch.randn(1, 1, 21, 17, 12) + 5.0  # an offset the residual must not round away
    ref = fast_forward(net, x)
    out = fast_forward(net, x, bf16=True)
    assert out.dtype == torch.float32
    err, residual = (out - ref), (ref - x)
    assert 0 < err.abs().max()  # it did run in bf16
    assert err.pow(2).mean().sqrt() < 0.01 * residual.pow(2).mean().sqrt()  # < 1 % of the correction's RMS
    assert err.abs().max() < 0.05 * residual.abs().max()


def test_precision_auto_follows_the_device_and_the_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "float32" and resolve_precision("auto", cuda) == "bfloat16"
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bfloat16"
    assert resolve_precision("float32", cpu) == "float32" == resolve_precision("float32", cuda)
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", cpu)


def test_fast_forward_falls_back_for_other_padding():
    net = ResidualCNN(1, 4, 3, padding_mode="reflect", zero_init=False).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(fast_forward(net, x), net(x))


@pytest.mark.parametrize("acq,fine,coarse", [
    (AcquisitionModel(), (40, 36, 22), (20, 18, 11)),                                    # x2, Gaussian slices
    (AcquisitionModel(profile="box"), (45, 40, 33), (30, 27, 22)),                        # x1.5, voxel averaging
    (AcquisitionModel(inplane="kspace", apodisation=0.2, profile="box"), (32, 32, 20), (16, 16, 10)),
    (AcquisitionModel(thickness_ratio=0.7), (48, 48, 30), (16, 16, 10)),                  # x3 with a slice gap
])
def test_closed_form_dc_equals_landweber_steps(acq, fine, coarse):
    rng = np.random.default_rng(1)
    y = rng.normal(5, 1, fine).astype(np.float32)
    x = rng.normal(5, 1, coarse).astype(np.float32)
    for iters in (1, 7, 50):
        ref = landweber_steps(y, x, acq, iters)
        out = data_consistency(y, x, acq, iters)
        assert np.abs(out - ref).max() < 1e-4 * np.abs(ref).max()
        assert np.abs(out - y).max() > 0.1  # and the steps did change y
    assert np.array_equal(data_consistency(y, x, acq, 0), y)


def test_head_box_covers_the_head_with_a_margin():
    x = np.zeros((40, 40, 20), np.float32)
    x[10:25, 5:30, 2:18] = 100.0
    x[0, 0, 0] = 1.0  # a faint ghost below 5 % does not widen the box
    box = head_box(x, (80, 80, 40), margin=3)
    assert [(b.start, b.stop) for b in box] == [(14, 56), (4, 66), (0, 40)]
    assert head_box(np.zeros_like(x), (80, 80, 40)) == (slice(0, 80), slice(0, 80), slice(0, 40))


def test_tiled_forward_in_a_box_matches_the_whole_volume_inside_and_is_the_input_outside():
    torch.manual_seed(0)
    net = ResidualCNN(1, 4, 4, padding_mode="replicate", zero_init=False).eval()
    inp = np.random.default_rng(2).normal(size=(30, 26, 18)).astype(np.float32)
    model = SimpleNamespace(net=net, device=torch.device("cpu"), max_voxels=10 ** 9, precision="float32")
    whole = _forward_tiled(model, inp)
    with torch.no_grad():
        assert np.allclose(whole, net(torch.from_numpy(inp)[None, None])[0, 0].numpy(), atol=1e-5)
    box = (slice(5, 24), slice(3, 20), slice(0, 18))
    model.max_voxels = 12 ** 3  # overlapping tiles inside the box too
    out = _forward_tiled(model, inp, box)
    assert np.allclose(out[box], whole[box], atol=1e-5)
    outside = np.ones(inp.shape, bool)
    outside[box] = False
    assert np.array_equal(out[outside], inp[outside])
