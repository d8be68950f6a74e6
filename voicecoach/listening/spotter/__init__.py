"""The trained English command spotter: speech embeddings, a small head, decisions."""
