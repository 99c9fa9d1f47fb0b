"""Exceptions with messages a clinician can act on.

Every error raised for bad input derives from :class:`BrainAgeInputError`, so a
batch run can record it for one case and go on with the next.
"""


class BrainAgeError(Exception):
    """Base class of every error raised by BrainAgeLib."""


class BrainAgeInputError(BrainAgeError, ValueError):
    """The input scan cannot be used; the message says why and what to do."""


class CorruptFileError(BrainAgeInputError):
    """The file is missing, truncated, or not a readable NIfTI image."""


class DimensionalityError(BrainAgeInputError):
    """The image is not a single 3D volume (2D slice, 4D series, ...)."""


class DataTypeError(BrainAgeInputError):
    """The voxels are not grayscale intensities (RGB colour, complex numbers)."""


class NonFiniteVoxelsError(BrainAgeInputError):
    """The image contains NaN or infinite voxel values."""


class ConstantImageError(BrainAgeInputError):
    """Every voxel has the same value: there is no anatomy to analyse."""


class VoxelSizeError(BrainAgeInputError):
    """Voxel sizes are zero, negative or physically implausible."""


class OrientationError(BrainAgeInputError):
    """The thick (through-plane) axis is not inferior-superior."""


class FieldOfViewError(BrainAgeInputError):
    """The field of view is too small to contain a whole adult brain."""


class QualityGateError(BrainAgeInputError):
    """The preprocessed scan fails the quality gate (e.g. a partial brain)."""


class ModelPackageError(BrainAgeError):
    """A model package is missing, malformed, incompatible or tampered with."""


class UnsafeWeightsError(ModelPackageError):
    """Weights in a pickle-based format were refused (they can run code)."""


class ChecksumError(ModelPackageError):
    """A weight file's sha256 does not match the one in the model card."""


class CalibrationError(BrainAgeError, ValueError):
    """A bias-correction calibration cannot be fitted or read."""


class SkullStripError(BrainAgeError):
    """Skull stripping could not run or found no brain; the message says what to do."""


class OutputError(BrainAgeError):
    """The results cannot be written (folder not writable, disk full); the message says what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a batch; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"interrupted by {name}")
        self.signum = signum
        self.name = name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
