"""Exception types users can catch; every message names the field, file or stage at fault."""


class MCLError(Exception):
    """Base class for mcl-ray errors."""


class ConfigError(MCLError, ValueError):
    """A configuration value is unknown, mistyped or out of range."""


class DataError(MCLError, ValueError):
    """A data set is missing, empty, corrupt or inconsistent."""


class ArtifactError(MCLError, RuntimeError):
    """A stored artifact is missing, unreadable, or does not match the checksum recorded when it was written."""


class TrainingError(MCLError, RuntimeError):
    """Training diverged (NaN/inf loss) or could not proceed."""
