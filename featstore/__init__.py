"""featstore: embed an image dataset once with a frozen encoder and keep the vectors in HDF5 shards."""

__version__ = "0.1.0"
