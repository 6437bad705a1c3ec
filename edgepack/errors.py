"""One root error for edgepack; one subclass per domain.

Every message names the file, layer, op or device at fault and what to do.
The CLI prints ``str(err)`` on one line and exits 1.
"""


class EdgepackError(Exception):
    """Root of all errors edgepack raises on purpose."""

    exit_code = 1


class UsageError(EdgepackError):
    """Options that contradict each other or are missing."""

    exit_code = 2


class ModelLoadError(EdgepackError):
    """A model file that is missing, corrupt, unsupported or unsafe."""


class DataError(EdgepackError):
    """Calibration, evaluation or training data of the wrong shape, dtype or content."""


class RecipeError(EdgepackError):
    """A recipe that is malformed, has unknown keys or cannot work in its order."""


class ConversionError(EdgepackError):
    """The TFLite converter failed."""


class VerificationError(EdgepackError):
    """A built model failed a check (accuracy drop, parity)."""


class UnsupportedOpError(EdgepackError):
    """The model uses an op the target cannot run."""


class BudgetError(EdgepackError):
    """The model does not fit the device's flash or RAM."""


class OutputExistsError(EdgepackError):
    """The output folder exists and --force was not given."""


class OutputWriteError(EdgepackError):
    """The output cannot be written where asked: read-only file system, full disk, no
    permission, or it would delete or overwrite an input."""


class LiteRTLoadError(ConversionError):
    """LiteRT (the phone runtime) refuses to load the model, e.g. quantization parameters it rejects."""


class ReportError(DataError):
    """A report.json that is missing, not JSON, or not an edgepack package report."""


class DeviceError(EdgepackError):
    """A device that is unreachable, timed out, disconnected or answered badly."""


def validation_message(err) -> str:
    """One line from a pydantic ValidationError: ``where: what`` of its first error."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
