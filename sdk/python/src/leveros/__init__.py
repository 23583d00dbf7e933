"""leveros: the Python SDK of Lever.

A client for calling Lever services (blocking and asyncio) and the runtime
that serves a Python service (`lever-serve-py`), over liblever, Lever's C
library (lever.h). See docs/sdk-python.md.

    from leveros import Client
    client = Client(force_host="127.0.0.1:8080")
    client.service("dev.lever", "helloService").invoke("sayHello", "world")
"""
from .client import Client, Endpoint
from .errors import LeverError
from .server import CallContext, Server, current_call, serve
from .streams import AsyncStream, Stream
from .url import is_chan_method

__version__ = "0.2.0"

__all__ = ["Client", "Endpoint", "LeverError", "Stream", "AsyncStream", "Server", "serve", "current_call",
           "CallContext", "is_chan_method", "__version__"]
