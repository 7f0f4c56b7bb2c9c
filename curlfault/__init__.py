"""curlfault: in-process fake servers and fault injection for pycurl.

from curlfault import FakeNetwork, faults

with FakeNetwork() as net:
    api = net.http("api.test")
    api.get("/items").respond(200, json=[1, 2])
    with net.intercept():
        ...  # every pycurl.Curl() made here is routed through net
"""

from . import faults
from ._errors import (
    CallbackError,
    ClientError,
    CurlFaultError,
    CurlFaultWarning,
    LeakError,
    MalformedRequest,
    ServerError,
    UnexpectedConnection,
    UnmatchedRequest,
    UnusedDeclaration,
    UsageError,
)
from ._http import Request, Response, Route
from ._intercept import InterceptedCurl
from ._ledger import Ledger, LedgerReport, SocketRecord
from ._loop import Loop
from ._network import Connection, Endpoint, FakeNetwork, HttpEndpoint, Intercepting
from ._ranges import ranges
from ._tls import ClientCert
from ._tracking import Tracker
from ._websocket import WebSocketFrame, WebSocketRoute

__version__ = "0.1.0"

__all__ = [
    "CallbackError",
    "ClientCert",
    "ClientError",
    "Connection",
    "CurlFaultError",
    "CurlFaultWarning",
    "Endpoint",
    "FakeNetwork",
    "HttpEndpoint",
    "InterceptedCurl",
    "Intercepting",
    "LeakError",
    "Ledger",
    "LedgerReport",
    "Loop",
    "MalformedRequest",
    "Request",
    "Response",
    "Route",
    "ServerError",
    "SocketRecord",
    "Tracker",
    "UnexpectedConnection",
    "UnmatchedRequest",
    "UnusedDeclaration",
    "UsageError",
    "WebSocketFrame",
    "WebSocketRoute",
    "__version__",
    "faults",
    "ranges",
]
