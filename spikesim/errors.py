"""Errors spikesim raises for bad input, so callers can catch them precisely."""


class SpikesimError(Exception):
    """Base class of spikesim's own errors."""


class DataError(SpikesimError, ValueError):
    """A data file is missing, corrupt, or not in the expected layout."""


class CheckpointError(SpikesimError, ValueError):
    """A checkpoint cannot be read, is refused, or does not match the network."""
