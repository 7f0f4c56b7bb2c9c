"""Exceptions, split by who is at fault.

* ``UsageError``: the test author misused curlfault (bad fault spec, bad argument).
* ``ClientError`` and subclasses: the client under test did something a test should know
  about (connected where no fake serves, sent a request no route matches, leaked a descriptor).
* ``ServerError``: the fake itself failed, or a user handler raised while serving.
* ``CallbackError``: an exception raised inside a pycurl callback that curlfault installed.
"""

from __future__ import annotations

__all__ = [
    "CallbackError",
    "ClientError",
    "CurlFaultError",
    "CurlFaultWarning",
    "LeakError",
    "MalformedRequest",
    "ServerError",
    "UnexpectedConnection",
    "UnmatchedRequest",
    "UsageError",
]


class CurlFaultError(Exception):
    """Base class of every error curlfault raises.

    When ``FakeNetwork.check()`` finds several problems it raises the first one, with every
    problem listed in its message and kept in ``problems``.
    """

    problems: list[CurlFaultError]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.problems = [self]


class UsageError(CurlFaultError, ValueError):
    """The test author used curlfault wrongly; the message says how to fix it."""


class ClientError(CurlFaultError):
    """The client under test did something the fake network was not told to expect."""


class UnexpectedConnection(ClientError):
    """pycurl connected to an address that no fake serves (strict mode)."""


class UnmatchedRequest(ClientError):
    """A request reached a fake endpoint and matched none of its routes."""


class MalformedRequest(ClientError):
    """A request could not be parsed; the fake answered with a 4xx and recorded it (a plain
    HTTP request sent to an HTTPS endpoint is closed without an answer)."""


class UnusedDeclaration(ClientError):
    """Something the test declared was never used: a connection fault no connection took,
    or a route step no request reached (only with ``check(all_used=True)``)."""


class LeakError(ClientError):
    """A descriptor handed to libcurl was not closed exactly once."""


class ServerError(CurlFaultError):
    """The fake server, or a handler the test supplied, raised while serving."""


class CallbackError(CurlFaultError):
    """An exception was raised inside a pycurl callback installed by curlfault."""


class CurlFaultWarning(UserWarning):
    """Something will not be checked as the test expects; the message says what to do."""


for _cls in (
    CurlFaultError,
    UsageError,
    ClientError,
    UnexpectedConnection,
    UnmatchedRequest,
    MalformedRequest,
    UnusedDeclaration,
    LeakError,
    ServerError,
    CallbackError,
    CurlFaultWarning,
):
    _cls.__module__ = "curlfault"
