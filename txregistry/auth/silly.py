# -*- test-case-name: tests.test_auth -*-
"""
Distribution's C{silly} access controller, for development only: any
request with an C{Authorization} header, whatever it says, may do anything;
one without gets a 401 with a C{Bearer} challenge naming the configured
realm and service and the scope the request needed.

    auth:
      silly:
        realm: silly-realm
        service: silly-service
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from txregistry.auth.challenges import bearer_challenge, unauthorized
from txregistry.config import ConfigError, check_parameters
from txregistry.interfaces import (
    Access,
    AuthRequest,
    IAccessController,
    IAccessControllerFactory,
    Identity,
)


@implementer(IAccessController)
class SillyAccessController:
    """Lets in every request that carries an C{Authorization} header."""

    def __init__(self, realm: str, service: str) -> None:
        self.realm = realm
        self.service = service

    def authorized(self, request: AuthRequest, access: Sequence[Access]) -> Deferred[Identity]:
        """See L{IAccessController.authorized}."""
        if request.headers.getRawHeaders(b"Authorization"):
            return succeed(Identity(None))
        return fail(unauthorized(access, bearer_challenge(self.realm, self.service, access)))


@implementer(IAccessControllerFactory)
class SillyAccessControllerFactory:
    """Makes L{SillyAccessController}s from C{realm} and C{service}, both required."""

    name = "silly"

    def create(self, options: Mapping[str, Any]) -> IAccessController:
        """See L{IAccessControllerFactory.create}."""
        check_parameters("auth.silly", options, {"realm": str, "service": str})
        for key in ("realm", "service"):
            if not options.get(key):
                raise ConfigError(f"auth.silly.{key}", "is required")
        return SillyAccessController(options["realm"], options["service"])
