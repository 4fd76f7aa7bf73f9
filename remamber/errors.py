"""User-facing errors.

Every error a user can cause (bad input, missing library, wrong checkpoint) is raised as a
``RemamberError`` whose message names the problem and the fix. The CLI prints the message and
exits with status 2 instead of showing a traceback.
"""


class RemamberError(Exception):
    """An error caused by input or environment, with a message that says how to fix it."""


class InputError(RemamberError, ValueError):
    """Bad input data: wrong shape, dtype, resolution, NaN values, wrong token length."""


class CheckpointError(RemamberError):
    """A checkpoint file that is missing, unreadable or does not match the model."""


class NativeLibraryError(RemamberError):
    """A compiled library (ORT custom ops, TensorRT plugin, CUDA launcher) is missing or broken."""


class RegressionError(RemamberError):
    """A benchmark run that fails its latency or parity gate."""
