"""Scoring question sets: metrics, the pooled sets and their split, and engines side by side."""
