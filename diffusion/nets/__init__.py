"""PyTorch networks: the RGBA VAE, the text-conditioned UNet, the EDM wrapper, the text encoder.

Every ``forward`` is plain tensor ops with no data-dependent Python control flow, so the nets
export to ONNX as they are.
"""
