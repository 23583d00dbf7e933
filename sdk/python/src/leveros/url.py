"""Lever URLs (lever://env/service[/resource]/method, /service[/resource]/method)
and the streaming-name rule."""
from __future__ import annotations


def is_chan_method(name: str) -> bool:
    """A method is streaming iff its name ends with Chan or _chan, or is chan."""
    return name == "chan" or name.endswith("Chan") or name.endswith("_chan")


def parse_url(text: str) -> "tuple[str, str, str, str]":
    """(environment, service, resource, method); the environment is
    lowercased and '' for a relative URL. The resource is everything between
    the service and the method (it may hold '/')."""
    if not isinstance(text, str):
        raise TypeError("the Lever URL must be a str")
    env = ""
    if text.startswith("lever://"):
        s = text[len("lever://"):]
        slash = s.find("/")
        if slash < 0:
            raise ValueError(f"Invalid Lever URL: {text}")
        env, rest = s[:slash].lower(), s[slash:]
    elif text.startswith("/"):
        rest = text
    else:
        raise ValueError(f"Invalid Lever URL: {text}")
    path = rest[1:]
    first, last = path.find("/"), path.rfind("/")
    if first <= 0 or last == len(path) - 1:
        raise ValueError(f"Invalid Lever URL: {text}")
    return env, path[:first], path[first + 1:last] if first != last else "", path[last + 1:]


def format_url(env: str, service: str, resource: str, method: str) -> str:
    tail = f"/{service}/{resource or ''}/{method}"
    return f"lever://{env}{tail}" if env else tail
