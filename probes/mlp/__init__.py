"""The MLP head's numerics: stacked heads, AdamW + OneCycle, a batched trainer with early stopping."""
