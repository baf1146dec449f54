"""The simulated researcher: learning curves of the product's loop against baselines."""
