"""Networks: config round trips, shapes, EDM preconditioning limits, seamless tiling."""

from __future__ import annotations

import json

import torch

from diffusion.nets.config import EDMConfig, ModelConfig, UNetConfig, VAEConfig
from diffusion.nets.edm import EDMDenoiser, edm_loss_weight
from diffusion.nets.layers import set_padding_mode
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE

TINY_VAE = VAEConfig(channels=(8, 16, 16), groups=8)
TINY_UNET = UNetConfig(channels=(16, 32), num_res_blocks=1, embed_dim=32, heads=2, groups=8)


def test_configs_round_trip_through_json():
    for cfg in (TINY_VAE, TINY_UNET, EDMConfig(), ModelConfig()):
        back = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg


def test_shapes():
    torch.manual_seed(0)
    vae, unet = VAE(TINY_VAE), UNet(TINY_UNET)
    x = torch.rand(2, 4, 16, 16) * 2 - 1
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    assert vae.decode(mean).shape == x.shape
    out = unet(mean, torch.zeros(2), torch.randn(2, 24, 384), torch.ones(2, 24), torch.tensor([0, 3]))
    assert out.shape == mean.shape


def test_edm_denoiser_is_identity_at_tiny_sigma_and_weight_matches_table_1():
    torch.manual_seed(0)
    d = EDMDenoiser(UNet(TINY_UNET), EDMConfig(sigma_data=1.0))
    for p in d.parameters():   # a non-trivial network output
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 4, 4, 4)
    ctx, mask, style = torch.randn(2, 24, 384), torch.ones(2, 24), torch.zeros(2, dtype=torch.long)
    out = d(x, torch.full((2,), 1e-4), ctx, mask, style)
    assert torch.allclose(out, x, atol=1e-3)   # c_skip -> 1, c_out -> 0
    s = torch.tensor([0.5, 2.0])
    assert torch.allclose(edm_loss_weight(s, 0.5), (s**2 + 0.25) / (s * 0.5) ** 2)


def test_text_mask_hides_padding_tokens():
    torch.manual_seed(0)
    d = EDMDenoiser(UNet(TINY_UNET), EDMConfig())
    for p in d.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, sigma = torch.randn(1, 4, 4, 4), torch.ones(1)
    ctx, mask = torch.randn(1, 24, 384), torch.zeros(1, 24)
    mask[0, :3] = 1
    ctx2 = ctx.clone()
    ctx2[0, 3:] = torch.randn(21, 384)   # change only padded positions
    style = torch.zeros(1, dtype=torch.long)
    assert torch.allclose(d(x, sigma, ctx, mask, style), d(x, sigma, ctx2, mask, style), atol=1e-5)


def test_circular_padding_makes_decoder_outputs_tile():
    torch.manual_seed(0)
    vae = VAE(TINY_VAE).eval()
    for p in vae.parameters():
        torch.nn.init.normal_(p, std=0.1)
    set_padding_mode(vae, "circular")
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        one = vae.decode(z)
        two = vae.decode(z.repeat(1, 1, 2, 2))
    # A circular-padded conv net commutes with periodic tiling: the image wraps seamlessly.
    assert torch.allclose(two, one.repeat(1, 1, 2, 2), atol=1e-5)
    set_padding_mode(vae, "zeros")
    with torch.no_grad():
        assert not torch.allclose(vae.decode(z.repeat(1, 1, 2, 2)), one.repeat(1, 1, 2, 2), atol=1e-3)


def test_finetune_adds_style_rows_at_the_mean_of_existing_styles():
    from diffusion.training.finetune import extend_styles

    emb = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    out = extend_styles({"style_embed.weight": emb, "other": torch.ones(1)}, 6)["style_embed.weight"]
    assert out.shape == (6, 3)
    assert torch.equal(out[:4], emb)
    assert torch.equal(out[4], emb[1:].mean(0)) and torch.equal(out[5], emb[1:].mean(0))
