"""What the network predicts (ε, x0 or v) and how to convert its output back."""
