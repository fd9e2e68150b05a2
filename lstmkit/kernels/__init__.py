"""Fused recurrent kernels and wrappers around torch's own."""
