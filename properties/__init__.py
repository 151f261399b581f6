"""Implementation-agnostic Hypothesis properties of batch normalization."""
