"""The §4 patch UNet of Multistable SfS: exact size, shapes, gradients (mssfs spec §10 A1)."""
import io
import math
from pathlib import Path

import torch

from models.core.config import load_config
from models.nets.sfs_patch_unet import PatchUNet, PatchUNetConfig, sinusoidal_embedding

STAGES = {  # §4.2 table
    "init": 80, "time_mlp": 18688, "down0": 26976, "down1": 28016, "down2": 78560, "down3": 288192,
    "mid_block1": 328704, "mid_attn": 65920, "mid_block2": 328704, "up0": 994240, "up1": 282080, "up2": 87280,
    "up3": 33920, "out_res": 11664, "out_conv": 51,
}



def test_param_count_exact_and_per_stage():
    net = PatchUNet()
    assert sum(p.numel() for p in net.parameters()) == 2_573_075
    assert net.stage_param_counts() == STAGES


def test_state_dict_size_about_10_4_mb():
    buf = io.BytesIO()
    torch.save(PatchUNet().state_dict(), buf)
    assert 10.2e6 < buf.getbuffer().nbytes < 10.6e6
    assert all(v.dtype == torch.float32 for v in PatchUNet().state_dict().values())


def test_forward_per_sample_timesteps():
    """Each sample is denoised at its own step (int or float indices alike), and the step changes the output."""
    torch.manual_seed(0)
    net = PatchUNet().eval()
    x, cond = torch.randn(3, 3, 16, 16), torch.rand(3, 1, 16, 16)
    t = torch.tensor([0, 150, 299])
    with torch.no_grad():
        a = net(x, t, cond)
        b = net(x, t.float(), cond)
        rows = [net(x[i:i + 1], t[i:i + 1], cond[i:i + 1]) for i in range(3)]
        late = net(x, torch.full((3,), 299), cond)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    for i in range(3):  # row i of the batch is sample i at step t[i] (batch shapes differ: a tolerance)
        torch.testing.assert_close(a[i:i + 1], rows[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(late[2], a[2], atol=1e-5, rtol=1e-5)
    assert (late[0] - a[0]).abs().mean() > 1e-3  # t = 0 vs t = 299 on the same input


def test_image_is_channel_zero_and_matters():
    net = PatchUNet().eval()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 10])
    with torch.no_grad():
        a = net(x, t, torch.zeros(2, 1, 16, 16))
        b = net(x, t, torch.ones(2, 1, 16, 16))
    assert not torch.allclose(a, b)
    assert net.init_conv.in_channels == 4


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = PatchUNet()
    out = net(torch.randn(2, 3, 16, 16), torch.tensor([5, 200]), torch.rand(2, 1, 16, 16))
    (out ** 2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    zero = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert not missing and not zero, (missing, zero)


def test_tiny_config_and_determinism():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "sfs" / "tiny.json").net  # the one tiny config
    torch.manual_seed(1)
    a = PatchUNet(cfg)
    torch.manual_seed(1)
    b = PatchUNet(cfg)
    x, c, t = torch.randn(2, 3, 16, 16), torch.rand(2, 1, 16, 16), torch.tensor([3, 4])
    assert torch.equal(a(x, t, c), b(x, t, c))
    assert a(x, t, c).shape == (2, 3, 16, 16)
    assert sum(p.numel() for p in a.parameters()) < 200_000


def test_sinusoidal_embedding_formula():
    e = sinusoidal_embedding(torch.tensor([0, 1]), 16)
    assert torch.equal(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    freqs = torch.exp(-torch.arange(8) * math.log(1e4) / 7)
    assert torch.allclose(e[1, :8], torch.sin(freqs)) and torch.allclose(e[1, 8:], torch.cos(freqs))
