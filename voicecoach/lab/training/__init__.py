"""Training data for the command spotter: text lists and the synthetic speech corpus generator."""
