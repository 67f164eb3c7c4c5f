"""Stages of clampdpo: corpus building, training entry points and campaign stages."""
