"""Evaluation: statistics shared by every benchmark and report."""
