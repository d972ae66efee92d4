"""probes: train, compare, evaluate and submit classifier heads on cached features."""
