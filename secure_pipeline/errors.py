"""One error root, one subclass per failure kind; the CLI maps each kind to an exit code."""

from __future__ import annotations


class SecurePipelineError(Exception):
    """Root of every error secure-pipeline raises on purpose."""

    exit_code = 3


class BadInputError(SecurePipelineError):
    """The caller's input is unusable: a missing or malformed file, column, key or setting (exit 2)."""

    exit_code = 2


class CheckFailedError(SecurePipelineError):
    """A check ran and said no: verification failed, unsafe model found (exit 1)."""

    exit_code = 1


class InfrastructureError(SecurePipelineError):
    """Something outside the caller's input failed: tracking server, artifact store I/O (exit 3)."""

    exit_code = 3
