"""Entropy models (training likelihoods and integer coding tables) and range coding."""
