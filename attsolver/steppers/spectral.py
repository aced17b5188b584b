"""Pseudo-spectral steppers for periodic 1-D semilinear PDEs (ETDRK4, IFRK4).

Placeholder: filled in by the spectral work item.
"""
