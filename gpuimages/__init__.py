"""gpuimages: one version matrix in, vetted PyTorch GPU Docker images out."""

__version__ = "0.1.0"
