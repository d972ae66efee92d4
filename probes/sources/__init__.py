"""Where a head's train rows come from: arrays in memory, or blocks streamed from the store."""
