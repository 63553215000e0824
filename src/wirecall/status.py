"""The 17 status codes every wirecall call ends with (the gRPC codes, same numbers)."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Outcome of a call. Numbers are gRPC's, so they cross the gRPC edge unchanged."""

    #: Not an error; returned on success.
    OK = 0
    #: The operation was cancelled, typically by the caller.
    CANCELLED = 1
    #: Unknown error (e.g. an error from another address space with an unknown status).
    UNKNOWN = 2
    #: The client specified an invalid argument; the message names the field.
    INVALID_ARGUMENT = 3
    #: The deadline expired before the operation could complete.
    DEADLINE_EXCEEDED = 4
    #: Some requested entity was not found.
    NOT_FOUND = 5
    #: The entity that a client attempted to create already exists.
    ALREADY_EXISTS = 6
    #: The caller does not have permission to execute the operation.
    PERMISSION_DENIED = 7
    #: Some resource has been exhausted (a message over the size limit, a quota).
    RESOURCE_EXHAUSTED = 8
    #: The system is not in a state required for the operation.
    FAILED_PRECONDITION = 9
    #: The operation was aborted (concurrency conflict, transaction abort).
    ABORTED = 10
    #: The operation was attempted past the valid range.
    OUT_OF_RANGE = 11
    #: The operation (service or method) is not implemented.
    UNIMPLEMENTED = 12
    #: Internal error: an invariant broke, or a handler raised something unexpected.
    INTERNAL = 13
    #: The service is currently unavailable (connection lost, server shutting down).
    UNAVAILABLE = 14
    #: Unrecoverable data loss or corruption.
    DATA_LOSS = 15
    #: The request does not have valid authentication credentials.
    UNAUTHENTICATED = 16
