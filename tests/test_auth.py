"""
Access control's frame: what each route asks of the controller, the scope
and detail it is described by, the controllers found as plugins, and, with
Distribution's C{silly} controller in a real process, that every route is
guarded (streamed upload bodies included) and answers 401 with the
challenge and the OCI error JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from conftest import Registry
from support import MISSING, assert_error, sha256
from txregistry.auth.access import CATALOG, detail, repository_access, required_access, scope
from txregistry.auth.plugins import access_controller_factories
from txregistry.auth.silly import SillyAccessControllerFactory
from txregistry.config import ConfigError
from txregistry.interfaces import Access, AuthRequest, IAccessController, Identity
from txregistry.outcome import Outcome
from txregistry.resources.routes import match_route
from txregistry.testing.client import request


class RequiredAccessTests(SynchronousTestCase):
    """What each route and method asks for, as Distribution's app.go."""

    def needs(self, path: str, method: str) -> list[Access]:
        return required_access(match_route(path, method), method)

    def test_base_needs_nothing(self) -> None:
        """C{GET /v2/} asks only who the client is."""
        self.assertEqual(self.needs("", "GET"), [])

    def test_catalog(self) -> None:
        """The catalog needs C{registry:catalog:*}."""
        self.assertEqual(self.needs("_catalog", "GET"), [CATALOG])

    def test_repository_actions(self) -> None:
        """Reads pull; writes pull and push; deletes delete."""
        pull = [repository_access("a/b", "pull")]
        push = [*pull, repository_access("a/b", "push")]
        delete = [repository_access("a/b", "delete")]
        for path, method, expected in [
            ("a/b/manifests/latest", "GET", pull),
            ("a/b/manifests/latest", "HEAD", pull),
            ("a/b/tags/list", "GET", pull),
            (f"a/b/blobs/{MISSING}", "GET", pull),
            (f"a/b/referrers/{MISSING}", "GET", pull),
            ("a/b/manifests/latest", "PUT", push),
            ("a/b/blobs/uploads/", "POST", push),
            ("a/b/blobs/uploads/some-id", "PATCH", push),
            ("a/b/blobs/uploads/some-id", "PUT", push),
            ("a/b/blobs/uploads/some-id", "GET", pull),
            ("a/b/manifests/latest", "DELETE", delete),
            (f"a/b/blobs/{MISSING}", "DELETE", delete),
            ("a/b/blobs/uploads/some-id", "DELETE", delete),
        ]:
            self.assertEqual(self.needs(path, method), expected, (path, method))

    def test_scope(self) -> None:
        """One C{type:name:actions} per resource, in the order asked, actions once."""
        access = [
            repository_access("a", "pull"),
            repository_access("a", "push"),
            repository_access("b", "pull"),
            repository_access("a", "pull"),
            CATALOG,
        ]
        self.assertEqual(
            scope(access), "repository:a:pull,push repository:b:pull registry:catalog:*"
        )
        self.assertEqual(scope([]), "")

    def test_detail(self) -> None:
        """The detail of a 401 lists each access as Distribution does."""
        self.assertEqual(
            detail([repository_access("a", "pull")]),
            [{"Type": "repository", "Class": "", "Name": "a", "Action": "pull"}],
        )


class OutcomeTests(SynchronousTestCase):
    """One authorization, awaited by the body router and the handler."""

    def test_every_waiter_gets_the_result(self) -> None:
        source: Deferred[int] = Deferred()
        outcome = Outcome(source)
        early = outcome.wait()
        source.callback(7)
        self.assertEqual(self.successResultOf(early), 7)
        self.assertEqual(self.successResultOf(outcome.wait()), 7)

    def test_every_waiter_gets_the_failure(self) -> None:
        outcome: Outcome[int] = Outcome(fail(ValueError("no")))
        for _ in range(2):
            self.failureResultOf(outcome.wait(), ValueError)

    def test_cancelling_a_wait_cancels_nothing_else(self) -> None:
        """A waiter that gives up (its client left) leaves the source and the others alone."""
        source: Deferred[int] = Deferred()
        outcome = Outcome(source)
        leaving, staying = outcome.wait(), outcome.wait()
        leaving.cancel()
        self.failureResultOf(leaving, CancelledError)
        self.assertFalse(source.called)
        source.callback(3)
        self.assertEqual(self.successResultOf(staying), 3)

    def test_unwaited_failure_not_logged(self) -> None:
        """A failure nobody waits for is not an unhandled error."""
        Outcome(fail(ValueError("no")))
        self.assertEqual(self.flushLoggedErrors(ValueError), [])


class SillyControllerTests(SynchronousTestCase):
    """Distribution's development controller."""

    def setUp(self) -> None:
        self.controller = SillyAccessControllerFactory().create(
            {"realm": "silly-realm", "service": "silly-service"}
        )

    def ask(self, headers: dict[bytes, list[bytes]], access: list[Access]) -> Any:
        from twisted.web.http_headers import Headers

        return self.controller.authorized(AuthRequest("GET", "/v2/", Headers(headers), "p"), access)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IAccessController, self.controller))

    def test_any_authorization_passes(self) -> None:
        result = self.ask({b"Authorization": [b"whatever"]}, [CATALOG])
        self.assertEqual(self.successResultOf(result), Identity(None))

    def test_challenge(self) -> None:
        """No header: 401 with Distribution's challenge, the scope when something is asked."""
        failure: Failure = self.failureResultOf(self.ask({}, [repository_access("a", "pull")]))
        error: Any = failure.value
        self.assertEqual(error.status, 401)
        self.assertEqual(
            error.headers["WWW-Authenticate"],
            'Bearer realm="silly-realm",service="silly-service",scope="repository:a:pull"',
        )
        failure = self.failureResultOf(self.ask({}, []))
        self.assertEqual(
            failure.value.headers["WWW-Authenticate"],  # type: ignore[attr-defined]
            'Bearer realm="silly-realm",service="silly-service"',
        )

    def test_options(self) -> None:
        """Both options are required; nothing else is taken."""
        factory = SillyAccessControllerFactory()
        for options, key in [
            ({"realm": "r"}, "auth.silly.service"),
            ({"service": "s"}, "auth.silly.realm"),
            ({"realm": "r", "service": "s", "extra": 1}, "auth.silly.extra"),
            ({"realm": 1, "service": "s"}, "auth.silly.realm"),
        ]:
            with self.assertRaises(ConfigError) as raised:
                factory.create(options)
            self.assertEqual(raised.exception.key, key)

    def test_found_as_plugin(self) -> None:
        self.assertIn("silly", access_controller_factories())


# -- a registry behind the silly controller ---------------------------------------------

SILLY = {"auth": {"silly": {"realm": "silly-realm", "service": "silly-service"}}}


@pytest.fixture
def silly_registry(start_registry_with: Callable[..., Registry]) -> Registry:
    return start_registry_with(SILLY)


def unauthorized(registry: Registry, method: str, target: str, scope_text: str | None) -> None:
    """C{method target} without credentials: 401, the challenge, the OCI error."""
    response = request(
        method, registry.resolve(target), b"" if method in ("PUT", "PATCH") else None
    )
    challenge = 'Bearer realm="silly-realm",service="silly-service"'
    if scope_text:
        challenge += f',scope="{scope_text}"'
    assert response.header("WWW-Authenticate") == challenge, (method, target)
    if method == "HEAD":
        assert response.status == 401
    else:
        assert_error(response, 401, "UNAUTHORIZED")


def test_every_route_guarded(silly_registry: Registry, repo: str) -> None:
    """Without credentials, every route answers 401 with the challenge it needs."""
    for method, target, scope_text in [
        ("GET", "", None),
        ("GET", "_catalog", "registry:catalog:*"),
        ("GET", f"{repo}/tags/list", f"repository:{repo}:pull"),
        ("GET", f"{repo}/manifests/latest", f"repository:{repo}:pull"),
        ("HEAD", f"{repo}/manifests/latest", f"repository:{repo}:pull"),
        ("PUT", f"{repo}/manifests/latest", f"repository:{repo}:pull,push"),
        ("DELETE", f"{repo}/manifests/latest", f"repository:{repo}:delete"),
        ("GET", f"{repo}/blobs/{MISSING}", f"repository:{repo}:pull"),
        ("DELETE", f"{repo}/blobs/{MISSING}", f"repository:{repo}:delete"),
        ("POST", f"{repo}/blobs/uploads/", f"repository:{repo}:pull,push"),
        ("GET", f"{repo}/referrers/{MISSING}", f"repository:{repo}:pull"),
    ]:
        unauthorized(silly_registry, method, target, scope_text)


def test_unauthorized_body_not_stored(silly_registry: Registry, repo: str) -> None:
    """
    An upload body sent without credentials is refused before it reaches
    storage: a monolithic POST stores no blob; a PATCH to an upload (started
    with credentials) adds nothing to it.
    """
    data = b"x" * 300_000
    response = request(
        "POST", silly_registry.resolve(f"{repo}/blobs/uploads/?digest={sha256(data)}"), data
    )
    assert_error(response, 401, "UNAUTHORIZED")
    assert not silly_registry.blob_file(sha256(data)).exists()

    credentials = {"Authorization": "Bearer anything"}
    response = request(
        "POST", silly_registry.resolve(f"{repo}/blobs/uploads/"), headers=credentials
    )
    assert response.status == 202
    location = response.header("Location")
    assert location is not None
    response = request("PATCH", silly_registry.resolve(location), iter([data]))
    assert_error(response, 401, "UNAUTHORIZED")
    status = request("GET", silly_registry.resolve(location), headers=credentials)
    assert status.status == 204
    assert status.header("Range") == "0-0"


def test_credentials_let_in(silly_registry: Registry, repo: str) -> None:
    """With any C{Authorization}, the API works as without access control."""
    credentials = {"Authorization": "Basic Zm9vOmJhcg=="}
    data = b"layer bytes"
    response = request(
        "POST",
        silly_registry.resolve(f"{repo}/blobs/uploads/?digest={sha256(data)}"),
        data,
        credentials,
    )
    assert response.status == 201
    response = request(
        "GET", silly_registry.resolve(f"{repo}/blobs/{sha256(data)}"), headers=credentials
    )
    assert response.body == data
    response = request("GET", silly_registry.resolve("_catalog"), headers=credentials)
    assert repo in json.loads(response.body)["repositories"]


def test_unknown_controller_is_one_line(start_registry_with: Callable[..., Registry]) -> None:
    """An auth section naming no installed controller stops start-up with one line."""
    with pytest.raises(RuntimeError) as raised:
        start_registry_with({"auth": {"ldap": {"url": "ldap://x"}}})
    message = str(raised.value)
    assert "auth.ldap: unknown access controller (installed: " in message
    assert "Traceback" not in message


def test_secrets_not_logged(start_registry_with: Callable[..., Registry], repo: str) -> None:
    """
    Neither C{http.secret} nor the credentials a client sends reach the
    log, whatever the request does (uploads, whose URLs carry state signed
    with the secret, included).
    """
    secret = "http-secret-that-must-not-be-logged"
    credentials = "Bearer token-that-must-not-be-logged"
    registry = start_registry_with({**SILLY}, secret=secret)
    headers = {"Authorization": credentials}
    response = request("POST", registry.resolve(f"{repo}/blobs/uploads/"), headers=headers)
    location = response.header("Location")
    assert location is not None
    response = request("PATCH", registry.resolve(location), b"chunk", headers)
    assert response.status == 202
    request("GET", registry.resolve(f"{repo}/manifests/latest"), headers=headers)
    request("GET", registry.resolve(f"{repo}/manifests/latest"))
    registry.process.stop()
    log = registry.process.output()
    assert "POST /v2/" in log  # the access log is on
    for text in (secret, "token-that-must-not-be-logged"):
        assert text not in log
