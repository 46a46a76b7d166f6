# -*- test-case-name: tests.test_proxy_upstream -*-
"""
The client a pull-through cache talks to its upstream registry with, over
treq: a manifest's C{HEAD} and C{GET}, a blob's C{GET} to stream (redirects
to presigned URLs followed), each signed in as a Docker client signs in.

A request goes out anonymous, or with what worked before for its scope;
on a 401 the client reads the C{WWW-Authenticate} challenges
(L{parse_challenges}) and answers C{Basic} with the configured credentials
or C{Bearer} with a token from the challenge's realm (asked for the
repository's C{pull} scope, with the credentials when configured), then
sends the request again once.  Tokens are kept per scope until shortly
before they expire, so later requests skip the 401.

Whatever goes wrong on the way (upstream unreachable, no answer within
C{timeout}, a 5xx, credentials refused, a token server's nonsense) is an
L{UpstreamError}; a 404 the subclass L{UpstreamNotFound}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, HTTPConnectionPool, RequestTransmissionFailed, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from txregistry.digest import SUPPORTED_ALGORITHMS

_T = TypeVar("_T")

# A token is used until this many seconds before it expires (or half its
# life, for short ones), so that it does not expire on the way.
TOKEN_MARGIN = 10.0
# What a token lives when the token server does not say, and at least, as
# Docker's client assumes (docker/distribution registry/client/auth).
DEFAULT_TOKEN_LIFETIME = 60.0


class UpstreamError(Exception):
    """
    The upstream registry could not give what was asked: unreachable, no
    answer in time, an unexpected status, credentials refused, a bad token
    answer.  The message says which upstream URL and what happened.

    @ivar status: the HTTP status upstream answered, or L{None} when it did
        not answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamNotFound(UpstreamError):
    """Upstream answered 404: it does not hold the manifest or blob."""


# -- WWW-Authenticate ------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """
    One challenge of a C{WWW-Authenticate} header (RFC 9110 section 11.6.1).

    @ivar scheme: the auth scheme, lower-cased (C{basic}, C{bearer}).
    @ivar params: the auth parameters, names lower-cased, values unquoted;
        the first of a repeated name wins.
    @ivar token68: the C{token68} form some schemes use instead of
        parameters, or L{None}.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
_SPACE = " \t"


def _skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position


def _is_param(text: str, position: int) -> bool:
    """Whether an C{auth-param} (C{name BWS = BWS value}) starts at C{position}."""
    name = _TOKEN.match(text, position)
    if name is None:
        return False
    equals = _skip(text, name.end(), _SPACE)
    if equals >= len(text) or text[equals] != "=":
        return False
    value = _skip(text, equals + 1, _SPACE)
    return value < len(text) and (text[value] == '"' or _TOKEN.match(text, value) is not None)


def _ends_item(text: str, position: int) -> bool:
    """Whether only spaces stand between C{position} and a comma or the end."""
    position = _skip(text, position, _SPACE)
    return position >= len(text) or text[position] == ","


def _quoted_string(text: str, position: int) -> tuple[str, int]:
    """The value of the quoted string at C{position} (its C{"}), and where it ends."""
    value: list[str] = []
    position += 1
    while position < len(text):
        character = text[position]
        if character == '"':
            return "".join(value), position + 1
        if character == "\\":
            position += 1
            if position >= len(text):
                break
            character = text[position]
        value.append(character)
        position += 1
    raise ValueError(f"unterminated quoted string in {text!r}")


def _params(text: str, position: int) -> tuple[dict[str, str], int]:
    """
    The auth params from C{position} on, and where they end: the end of
    C{text}, or the start of the next challenge's scheme.
    """
    params: dict[str, str] = {}
    while position < len(text):
        if not _is_param(text, position):
            # After a comma, a token that no "=" follows is the next scheme.
            if params:
                break
            raise ValueError(f"expected an auth parameter at {position} in {text!r}")
        name = _TOKEN.match(text, position)
        assert name is not None
        position = _skip(text, _skip(text, name.end(), _SPACE) + 1, _SPACE)
        if text[position] == '"':
            value, position = _quoted_string(text, position)
        else:
            token = _TOKEN.match(text, position)
            assert token is not None
            value, position = token.group(), token.end()
        params.setdefault(name.group().lower(), value)
        position = _skip(text, position, _SPACE)
        if position < len(text):
            if text[position] != ",":
                raise ValueError(f"expected a comma at {position} in {text!r}")
            position = _skip(text, position, _SPACE + ",")
    return params, position


def parse_challenge_header(text: str) -> list[Challenge]:
    """
    The challenges of one C{WWW-Authenticate} value, in order: several may
    share one header, separated by commas, as may the parameters of each;
    quoted values may hold commas, C{=} and escaped quotes.

    @raise ValueError: C{text} is not a list of challenges.
    """
    challenges: list[Challenge] = []
    position = _skip(text, 0, _SPACE + ",")
    while position < len(text):
        scheme = _TOKEN.match(text, position)
        if scheme is None:
            raise ValueError(f"expected an auth scheme at {position} in {text!r}")
        position = scheme.end()
        after = _skip(text, position, _SPACE)
        params: dict[str, str] = {}
        token68: str | None = None
        if after >= len(text) or text[after] == ",":
            position = after
        elif after == position:
            raise ValueError(f"expected a space after the scheme at {position} in {text!r}")
        else:
            position = after
            candidate = _TOKEN68.match(text, position)
            if (
                candidate is not None
                and _ends_item(text, candidate.end())
                and not _is_param(text, position)
            ):
                token68, position = candidate.group(), candidate.end()
            else:
                params, position = _params(text, position)
        challenges.append(Challenge(scheme.group().lower(), params, token68))
        position = _skip(text, position, _SPACE + ",")
    return challenges


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """
    The challenges of every C{WWW-Authenticate} value of a response, in
    order; see L{parse_challenge_header}.

    @raise ValueError: a value is not a list of challenges.
    """
    return [challenge for value in values for challenge in parse_challenge_header(value)]


# Tags asked for in one page, and the most pages followed.
TAG_PAGE_SIZE = 1000
MAX_TAG_PAGES = 100

# -- the client ------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestHead:
    """
    What upstream's C{HEAD} of a manifest says about it.

    @ivar digest: its C{Docker-Content-Digest}, or L{None} when not given.
    @ivar media_type: its C{Content-Type}, or L{None}.
    @ivar size: its C{Content-Length}, or L{None}.
    """

    digest: str | None
    media_type: str | None
    size: int | None


@dataclass
class _Token:
    value: str
    renew_at: float


def _header(response: IResponse, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.ASCII)


def _next_page(link: str | None, current: str) -> str | None:
    """The path of the page a C{Link: <...>; rel="next"} header names, if any."""
    if link is None:
        return None
    found = _LINK_NEXT.search(link)
    if found is None:
        return None
    parts = urlsplit(found.group(1))
    if not parts.path.startswith("/v2/"):
        return None
    following = parts.path + (f"?{parts.query}" if parts.query else "")
    return None if following == current else following


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _digest_of(content: bytes, like: str) -> str | None:
    """C{content}'s digest by the algorithm of the digest C{like}; L{None} if unsupported."""
    algorithm = like.partition(":")[0]
    if algorithm not in SUPPORTED_ALGORITHMS:
        return None
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


class UpstreamRegistry:
    """
    A client of one upstream registry.  Every method's Deferred fires
    within C{timeout} seconds (for L{get_blob}, once the response's
    headers are in), or fails with L{UpstreamError}.  Call L{close} when
    done, to close its kept connections.

    @ivar url: the upstream's base URL (C{https://registry-1.docker.io}).
    @ivar timeout: the seconds each operation may take.
    """

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        reactor: Any = None,
        timeout: float = 30.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._credentials = (username, password or "") if username else None
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._client = HTTPClient(Agent(reactor, connectTimeout=timeout, pool=self._pool))
        self._tokens: dict[str, _Token] = {}
        # Set once upstream asked for Basic: later requests send it at once.
        self._basic_required = False

    # -- the API ------------------------------------------------------------------------

    def head_manifest(
        self,
        repository: str,
        reference: str,
        accept: Sequence[str],
        timeout: float | None = None,
    ) -> Deferred[ManifestHead | None]:
        """
        C{HEAD} a manifest by tag or digest, accepting the media types
        C{accept}: what upstream says of it, or L{None} if it answers 404.

        @param timeout: the seconds it may take, instead of L{timeout}.
        """
        return self._bounded(self._head_manifest(repository, reference, accept), timeout)

    def head_blob(self, repository: str, digest: str) -> Deferred[int | None]:
        """
        C{HEAD} a blob: its size (its C{Content-Length}; L{None} when
        upstream does not say).

        @raise UpstreamNotFound: upstream answered 404.
        """
        return self._bounded(self._head_blob(repository, digest))

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str]
    ) -> Deferred[tuple[bytes, str, str]]:
        """
        C{GET} a manifest by tag or digest: its bytes, media type and digest
        (upstream's C{Docker-Content-Digest}, checked against the bytes;
        computed when missing).

        @raise UpstreamNotFound: upstream answered 404.
        @raise UpstreamError: the bytes do not match the digest asked for or
            the one upstream gave, or see the class.
        """
        return self._bounded(self._get_manifest(repository, reference, accept))

    def get_blob(self, repository: str, digest: str) -> Deferred[IResponse]:
        """
        C{GET} a blob, following redirects: the 200 response, its body not
        yet read, for the caller to stream (C{treq.collect}) and verify.
        The timeout covers the response's headers only.

        @raise UpstreamNotFound: upstream answered 404.
        """
        return self._bounded(self._get_blob(repository, digest))

    def list_tags(self, repository: str) -> Deferred[list[str] | None]:
        """
        Every tag of the repository, following upstream's C{Link} pages (at
        most L{MAX_TAG_PAGES} of them); L{None} when upstream answers 404.
        """
        return self._bounded(self._list_tags(repository))

    def close(self) -> Deferred[None]:
        """Close the connections kept for reuse."""
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    # -- the operations -----------------------------------------------------------------

    async def _head_manifest(
        self, repository: str, reference: str, accept: Sequence[str]
    ) -> ManifestHead | None:
        path = f"/v2/{repository}/manifests/{reference}"
        response = await self._request("HEAD", repository, path, accept)
        await treq.content(response)
        if response.code == 404:
            return None
        self._expect_ok(response, path)
        length = _header(response, b"content-length")
        return ManifestHead(
            digest=_header(response, b"docker-content-digest"),
            media_type=_header(response, b"content-type"),
            size=int(length) if length is not None and length.isdigit() else None,
        )

    async def _list_tags(self, repository: str) -> list[str] | None:
        path: str | None = f"/v2/{repository}/tags/list?n={TAG_PAGE_SIZE}"
        tags: list[str] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > MAX_TAG_PAGES:
                raise UpstreamError(f"{self.url}: more than {MAX_TAG_PAGES} pages of tags")
            response = await self._request("GET", repository, path, ("application/json",))
            content: bytes = await treq.content(response)
            if response.code == 404 and not tags:
                return None
            self._expect_ok(response, path)
            try:
                document = json.loads(content)
                page = document.get("tags") or []
                if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                    raise ValueError("tags is not a list of strings")
            except (ValueError, AttributeError) as error:
                raise UpstreamError(f"{self.url}{path}: a malformed tag list: {error}") from None
            tags.extend(page)
            path = _next_page(_header(response, b"link"), path)
        return sorted(set(tags))

    async def _head_blob(self, repository: str, digest: str) -> int | None:
        path = f"/v2/{repository}/blobs/{digest}"
        response = await self._request("HEAD", repository, path, ())
        await treq.content(response)
        self._expect_ok(response, path)
        length = _header(response, b"content-length")
        return int(length) if length is not None and length.isdigit() else None

    async def _get_manifest(
        self, repository: str, reference: str, accept: Sequence[str]
    ) -> tuple[bytes, str, str]:
        path = f"/v2/{repository}/manifests/{reference}"
        response = await self._request("GET", repository, path, accept)
        content: bytes = await treq.content(response)
        self._expect_ok(response, path)
        media_type = _header(response, b"content-type") or ""
        given = _header(response, b"docker-content-digest")
        for expected in (reference if ":" in reference else None, given):
            if expected is not None and _digest_of(content, expected) not in (None, expected):
                raise UpstreamError(f"{self.url}{path}: the manifest does not match {expected}")
        digest = given or (reference if ":" in reference else None)
        if digest is None or _digest_of(content, digest) is None:
            digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
        return content, media_type, digest

    async def _get_blob(self, repository: str, digest: str) -> IResponse:
        path = f"/v2/{repository}/blobs/{digest}"
        response = await self._request("GET", repository, path, ())
        if response.code != 200:
            await treq.content(response)
            self._expect_ok(response, path)
        return response

    def _expect_ok(self, response: IResponse, path: str) -> None:
        if response.code == 404:
            raise UpstreamNotFound(f"{self.url}{path}: upstream answered 404", 404)
        if response.code != 200:
            raise UpstreamError(
                f"{self.url}{path}: upstream answered {response.code}", response.code
            )

    # -- signing in ---------------------------------------------------------------------

    async def _request(
        self, method: str, repository: str, path: str, accept: Sequence[str]
    ) -> IResponse:
        """
        Send C{method} C{path}, signed in as what worked before for the
        repository's pull scope; on a 401, answer its challenge and send it
        again once.
        """
        scope = f"repository:{repository}:pull"
        url = self.url + path
        authorization = self._known_authorization(scope)
        response = await self._send(method, url, accept, authorization)
        if response.code != 401:
            return response
        values = [
            value.decode("latin-1")
            for value in response.headers.getRawHeaders(b"www-authenticate", [])
        ]
        await treq.content(response)
        self._tokens.pop(scope, None)
        try:
            challenges = parse_challenges(values)
        except ValueError as error:
            raise UpstreamError(f"{url}: a malformed WWW-Authenticate: {error}", 401) from None
        authorization = await self._answer(url, challenges, scope)
        response = await self._send(method, url, accept, authorization)
        if response.code == 401:
            await treq.content(response)
            raise UpstreamError(f"{url}: upstream refused the credentials (401)", 401)
        return response

    def _known_authorization(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is not None:
            if self._reactor.seconds() < token.renew_at:
                return f"Bearer {token.value}"
            del self._tokens[scope]
        if self._basic_required and self._credentials is not None:
            return _basic(*self._credentials)
        return None

    async def _answer(self, url: str, challenges: Sequence[Challenge], scope: str) -> str:
        """The C{Authorization} that answers C{challenges}: Bearer preferred, then Basic."""
        by_scheme = {challenge.scheme: challenge for challenge in reversed(challenges)}
        bearer = by_scheme.get("bearer")
        if bearer is not None:
            return f"Bearer {await self._fetch_token(url, bearer, scope)}"
        if "basic" in by_scheme:
            if self._credentials is None:
                raise UpstreamError(
                    f"{url}: upstream asks for credentials; none are configured", 401
                )
            self._basic_required = True
            return _basic(*self._credentials)
        offered = ", ".join(challenge.scheme for challenge in challenges) or "no challenge"
        raise UpstreamError(f"{url}: upstream answered 401 with {offered}", 401)

    async def _fetch_token(self, url: str, challenge: Challenge, scope: str) -> str:
        """A token for C{scope} from the realm of C{challenge}, kept for later requests."""
        realm = challenge.params.get("realm", "")
        if urlsplit(realm).scheme not in ("http", "https"):
            raise UpstreamError(f"{url}: the Bearer challenge has no usable realm: {realm!r}", 401)
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        if self._credentials is not None:
            query["account"] = self._credentials[0]
        token_url = realm + ("&" if urlsplit(realm).query else "?") + urlencode(query)
        headers = Headers()
        if self._credentials is not None:
            headers.setRawHeaders(b"authorization", [_basic(*self._credentials).encode()])
        response = await self._client.get(token_url, headers=headers)
        content: bytes = await treq.content(response)
        if response.code != 200:
            refused = " (credentials refused)" if response.code in (401, 403) else ""
            raise UpstreamError(
                f"{realm}: the token server answered {response.code}{refused}", response.code
            )
        try:
            document = json.loads(content)
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, TypeError, AttributeError):
            raise UpstreamError(f"{realm}: the token server's answer is not a token") from None
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{realm}: the token server's answer holds no token")
        lifetime = max(lifetime, DEFAULT_TOKEN_LIFETIME)
        renew_in = max(lifetime - TOKEN_MARGIN, lifetime / 2)
        self._tokens[scope] = _Token(token, self._reactor.seconds() + renew_in)
        return token

    async def _send(
        self, method: str, url: str, accept: Sequence[str], authorization: str | None
    ) -> IResponse:
        headers = Headers()
        if accept:
            headers.setRawHeaders(b"accept", [", ".join(accept).encode("latin-1")])
        if authorization is not None:
            headers.setRawHeaders(b"authorization", [authorization.encode("latin-1")])
        # Twisted's redirect agent drops Authorization on a redirect to
        # another origin (a presigned URL), which would refuse it.  Bodies
        # are read once: treq need not keep them (a blob's whole).
        response: IResponse = await self._client.request(
            method, url, headers=headers, allow_redirects=True, unbuffered=True
        )
        return response

    # -- bounds -------------------------------------------------------------------------

    def _bounded(
        self, operation: Coroutine[Any, Any, _T], timeout: float | None = None
    ) -> Deferred[_T]:
        """
        C{operation}, cancelled after C{timeout} (else L{timeout}) seconds,
        its network failures as L{UpstreamError}.
        """
        limit = self.timeout if timeout is None else timeout
        return ensureDeferred(self._translated(ensureDeferred(operation), limit))

    async def _translated(self, running: Deferred[_T], limit: float) -> _T:
        # Cancelling an HTTP request fails it with ResponseNeverReceived or
        # a connection error rather than CancelledError: remember that the
        # clock, not the network, ended it.
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            running.cancel()

        timer = self._reactor.callLater(limit, expire)
        try:
            return await running
        except UpstreamError:
            raise
        except Exception as error:
            if timed_out:
                raise UpstreamError(f"{self.url}: no answer within {limit:g}s") from None
            if isinstance(
                error, (ConnectError, ResponseFailed, RequestTransmissionFailed, OSError)
            ):
                raise UpstreamError(
                    f"{self.url}: upstream unreachable: {_describe(error)}"
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()


def _describe(error: Exception) -> str:
    if isinstance(error, (ResponseFailed, RequestTransmissionFailed)):
        return "; ".join(failure.getErrorMessage() for failure in error.reasons) or "no response"
    return str(error) or type(error).__name__
