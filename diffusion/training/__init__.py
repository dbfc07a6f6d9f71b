"""Training: VAE, latent UNet (EDM), fine-tuning; resumable safetensors checkpoints."""
