"""Errors that end a run with a one-line message and an exit code (BIDS execution spec draft)."""

EX_OK = 0
EX_FAILURE = 1
EX_VALIDATION = 16
EX_UNKNOWN_LEVEL = 17
EX_NO_DATA_SELECTED = 18
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75


class BoldSRError(Exception):
    """An expected failure: printed as ``bids-boldsr: error: <message>``, exits with ``code``."""

    code = EX_FAILURE

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(BoldSRError):
    code = EX_USAGE


class ValidationError(BoldSRError):
    code = EX_VALIDATION


class NoDataSelected(BoldSRError):
    code = EX_NO_DATA_SELECTED


class BadInputData(BoldSRError):
    code = EX_DATAERR


class InputMissing(BoldSRError):
    code = EX_NOINPUT


class CannotCreateOutput(BoldSRError):
    code = EX_CANTCREAT
