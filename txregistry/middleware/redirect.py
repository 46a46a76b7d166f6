# -*- test-case-name: tests.test_middleware -*-
"""
Distribution's C{redirect} storage middleware: blob downloads are answered
with a redirect to the same path below another base URL (a CDN or a web
server in front of the storage), and everything else goes to the driver.

    middleware:
      storage:
        - name: redirect
          options:
            baseurl: https://cdn.example/registry

sends C{GET /v2/<name>/blobs/<digest>} to
C{https://cdn.example/registry/docker/registry/v2/blobs/sha256/<hh>/<hex>/data}.
As in Distribution 3, the base URL's scheme, host (and port) and path are
kept, and its user information, query and fragment are not.
C{storage.redirect.disable: true} still turns redirects off.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from txregistry.config import ConfigError, check_parameters
from txregistry.interfaces import IStorageDriver, IStorageMiddlewareFactory
from txregistry.middleware.storage import DelegatingDriver

# What Go's url.URL leaves unescaped in a path, besides letters, digits and
# "-._~" (which quote never escapes): the redirect URLs match Distribution's.
_PATH_SAFE = "/$&+,:;=@"


class RedirectMiddleware(DelegatingDriver):
    """
    Offers, for every path, a redirect URL below a base URL; delegates every
    other call to the wrapped driver.

    @param scheme: C{http} or C{https}.
    @param host: the host, with its port if any.
    @param base_path: the base URL's path, decoded; prefixed to every path.
    """

    def __init__(self, driver: IStorageDriver, scheme: str, host: str, base_path: str) -> None:
        super().__init__(driver)
        self.scheme = scheme
        self.host = host
        self.base_path = base_path

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """
        The base URL's scheme and host with the base path joined to C{path}
        (cleaned as Go's C{path.Join} cleans it), for any C{method}.
        """
        joined = "/" + posixpath.normpath(f"{self.base_path}/{path}").lstrip("/")
        return succeed(f"{self.scheme}://{self.host}{quote(joined, safe=_PATH_SAFE)}")


@implementer(IStorageMiddlewareFactory)
class RedirectMiddlewareFactory:
    """Makes L{RedirectMiddleware} from the one option, C{baseurl}."""

    name = "redirect"

    def wrap(self, driver: IStorageDriver, options: Mapping[str, Any]) -> IStorageDriver:
        """
        Wrap C{driver}, redirecting below C{options["baseurl"]}: required, an
        absolute C{http} or C{https} URL with a host.
        """
        check_parameters("options", options, {"baseurl": str})
        baseurl = options.get("baseurl")
        if baseurl is None:
            raise ConfigError(
                "options.baseurl", "missing; the URL to redirect to, such as https://cdn.example/"
            )
        scheme, host, base_path = _parse_base_url(baseurl)
        return RedirectMiddleware(driver, scheme, host, base_path)


def _parse_base_url(baseurl: str) -> tuple[str, str, str]:
    """
    The scheme, host and decoded path of C{baseurl}.

    @raise ConfigError: naming C{options.baseurl} unless it is an absolute
        http or https URL with a host.
    """
    problem = f"{baseurl!r} is not an absolute http or https URL such as https://cdn.example/"
    # A space or control character would end up in the Location header.
    if any(character.isspace() or ord(character) < 0x20 for character in baseurl):
        raise ConfigError("options.baseurl", problem)
    try:
        parts = urlsplit(baseurl)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError("options.baseurl", problem) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError("options.baseurl", problem)
    if not parts.hostname:
        raise ConfigError("options.baseurl", f"{baseurl!r} names no host")
    host = parts.netloc.rpartition("@")[2]
    return parts.scheme, host, unquote(parts.path)
