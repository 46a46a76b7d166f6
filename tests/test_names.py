"""
Names in the API: digests, repository names by Distribution's reference
grammar, and the routes that find them in a path.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from txregistry.digest import Digest
from txregistry.errors import DIGEST_INVALID, NAME_INVALID, UNSUPPORTED, RegistryError
from txregistry.names import check_repository_name
from txregistry.resources.routes import RequestHead, match_route

HEX256 = hashlib.sha256(b"layer").hexdigest()
HEX512 = hashlib.sha512(b"layer").hexdigest()
DIGEST = f"sha256:{HEX256}"


class DigestTests(SynchronousTestCase):
    """L{Digest.parse} accepts what go-digest accepts for the algorithms we verify."""

    def test_valid(self) -> None:
        """sha256, sha384 and sha512 digests of the right length parse."""
        for algorithm in ("sha256", "sha384", "sha512"):
            hex_part = hashlib.new(algorithm, b"layer").hexdigest()
            digest = Digest.parse(f"{algorithm}:{hex_part}")
            self.assertEqual((digest.algorithm, digest.hex), (algorithm, hex_part))
            self.assertEqual(str(digest), f"{algorithm}:{hex_part}")

    def test_of(self) -> None:
        """L{Digest.of} hashes content, with sha256 by default."""
        self.assertEqual(Digest.of(b"layer"), Digest("sha256", HEX256))
        self.assertEqual(Digest.of(b"layer", "sha512"), Digest("sha512", HEX512))
        self.assertEqual(Digest.parse(DIGEST).hasher().name, "sha256")

    def assert_invalid(self, text: str) -> RegistryError:
        error = self.assertRaises(RegistryError, Digest.parse, text)
        self.assertIs(error.error_code, DIGEST_INVALID, text)
        self.assertEqual(error.status, 400)
        return error

    def test_uppercase_hex(self) -> None:
        """Hex digits are lower case."""
        self.assert_invalid(f"sha256:{HEX256.upper()}")
        self.assert_invalid(f"sha256:{HEX256[:-1]}A")

    def test_wrong_length(self) -> None:
        """The hex part has exactly the algorithm's length."""
        for text in (f"sha256:{HEX256[:-1]}", f"sha256:{HEX256}0", f"sha512:{HEX256}", "sha256:"):
            self.assert_invalid(text)

    def test_unknown_algorithm(self) -> None:
        """A well-formed digest of an algorithm we cannot verify is refused, saying so."""
        for text in (f"md5:{HEX256}", f"sha3+256:{HEX256}", f"multihash+base58:{HEX256}"):
            error = self.assert_invalid(text)
            self.assertIn("unsupported digest algorithm", str(error.detail))
        self.assert_invalid(f"SHA256:{HEX256}")

    def test_garbage(self) -> None:
        """Anything else is not a digest."""
        for text in (
            "",
            HEX256,
            ":" + HEX256,
            f"sha256:{HEX256[:-1]}g",
            f"sha256::{HEX256}",
            f"sha256:{HEX256}\n",
            f" sha256:{HEX256}",
            f"sha256:{HEX256[:32]}/{HEX256[33:]}",
            "sha256:" + "é" * 64,
        ):
            self.assert_invalid(text)

    def test_detail_bounded(self) -> None:
        """A huge input is not echoed whole in the error."""
        error = self.assert_invalid("x" * 10_000)
        self.assertLess(len(str(error.detail)), 300)


class RepositoryNameTests(SynchronousTestCase):
    """L{check_repository_name} follows Distribution's reference grammar."""

    def test_valid(self) -> None:
        """Lower-case components with single separators, any number of them."""
        for name in (
            "a",
            "alpine",
            "library/alpine",
            "a/b/c/d/e/f",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo-bar",
            "foo--bar",
            "foo---bar",
            "a0/9z",
            "0",
            "my-org/my.app__v2/x-y",
            "registry.example/team/app",
            "Registry.Example/app",  # the first component may be a domain
            "a" * 255,
            "/".join(["abc"] * 63) + "/abc",
        ):
            self.assertEqual(check_repository_name(name), name)

    def assert_invalid(self, name: str) -> None:
        error = self.assertRaises(RegistryError, check_repository_name, name)
        self.assertIs(error.error_code, NAME_INVALID, name)
        self.assertEqual(error.status, 400)

    def test_separators(self) -> None:
        """Separators join components; they never lead, trail, or pile up."""
        for name in (
            "-foo",
            "foo-",
            ".foo",
            "foo.",
            "_foo",
            "foo_",
            "foo..bar",
            "foo___bar",
            "foo._bar",
            "foo-_bar",
            "foo/-bar",
            "foo/bar.",
        ):
            self.assert_invalid(name)

    def test_components(self) -> None:
        """No empty components, no upper case outside a domain, nothing outside the alphabet."""
        for name in (
            "",
            "/",
            "/foo",
            "foo/",
            "foo//bar",
            "Foo",
            "foo/Bar",
            "foo/bar/BAZ",
            "foo bar",
            "foo/bär",
            "foo:latest",
            "foo@sha256",
            "foo\nbar",
        ):
            self.assert_invalid(name)

    def test_no_host_port(self) -> None:
        """A registry's own names carry no port (a colon is no storage path character)."""
        self.assert_invalid("localhost:5000/foo")

    def test_length(self) -> None:
        """At most 255 characters in all."""
        self.assertEqual(check_repository_name("a" * 255), "a" * 255)
        self.assert_invalid("a" * 256)
        self.assertEqual(len("/".join(["abc"] * 64)), 255)
        self.assert_invalid("/".join(["abc"] * 64) + "a")


class RouteTests(SynchronousTestCase):
    """L{match_route} finds the endpoint, the name and the digest in a path below /v2/."""

    def test_base(self) -> None:
        """The empty path is the version check."""
        match = match_route("", "GET")
        self.assertEqual((match.route.name, match.name, match.digest), ("base", None, None))

    def test_blob(self) -> None:
        """A blob route yields the name and the parsed digest."""
        match = match_route(f"library/alpine/blobs/{DIGEST}", "HEAD")
        self.assertEqual(match.route.name, "blob")
        self.assertEqual(match.name, "library/alpine")
        self.assertEqual(match.digest, Digest("sha256", HEX256))

    def test_greedy_names(self) -> None:
        """Names are greedy: route words inside a name belong to it."""
        for path, route, name in [
            (f"foo/blobs/bar/blobs/{DIGEST}", "blob", "foo/blobs/bar"),
            (f"blobs/blobs/{DIGEST}", "blob", "blobs"),
            (f"a/blobs/uploads/blobs/{DIGEST}", "blob", "a/blobs/uploads"),
            ("foo/blobs/uploads/blobs/uploads/", "upload", "foo/blobs/uploads"),
            ("foo/blobs/uploads/blobs/uploads/abc", "upload_chunk", "foo/blobs/uploads"),
            ("uploads/blobs/uploads/abc", "upload_chunk", "uploads"),
        ]:
            method = "GET" if route == "blob" else ("POST" if route == "upload" else "PATCH")
            match = match_route(path, method)
            self.assertEqual((match.route.name, match.name), (route, name), path)

    def test_uploads(self) -> None:
        """Starting an upload works with and without the trailing slash."""
        for path in ("foo/bar/blobs/uploads/", "foo/bar/blobs/uploads"):
            match = match_route(path, "POST")
            self.assertEqual((match.route.name, match.name), ("upload", "foo/bar"), path)
        upload_id = "3f2b5c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
        for method in ("GET", "HEAD", "PATCH", "PUT", "DELETE"):
            match = match_route(f"foo/bar/blobs/uploads/{upload_id}", method)
            self.assertEqual(match.route.name, "upload_chunk")
            self.assertEqual((match.name, match.upload_id), ("foo/bar", upload_id))

    def assert_error(self, path: str, method: str, code: object, status: int) -> RegistryError:
        error = self.assertRaises(RegistryError, match_route, path, method)
        self.assertIs(error.error_code, code, path)
        self.assertEqual(error.status, status, path)
        return error

    def test_wrong_method(self) -> None:
        """A known route answers another method with 405 and C{Allow}."""
        for path, method, allowed in [
            (f"foo/blobs/{DIGEST}", "PUT", "DELETE, GET, HEAD"),
            (f"foo/blobs/{DIGEST}", "POST", "DELETE, GET, HEAD"),
            ("foo/blobs/uploads/", "GET", "POST"),
            ("foo/blobs/uploads", "PUT", "POST"),
            ("foo/blobs/uploads/abc", "POST", "DELETE, GET, HEAD, PATCH, PUT"),
            ("", "POST", "GET, HEAD"),
        ]:
            error = self.assert_error(path, method, UNSUPPORTED, 405)
            self.assertEqual(error.headers, {"Allow": allowed}, path)

    def test_unknown(self) -> None:
        """A path no route matches is 404."""
        for path in ("foo", "foo/bar", "foo/blob/x", "foo/blobs/uploads/a/b", "foo/blobs/"):
            self.assert_error(path, "GET", UNSUPPORTED, 404)

    def test_bad_digest(self) -> None:
        """A blob path whose digest is not one is DIGEST_INVALID."""
        for path in (
            "foo/blobs/notadigest",
            f"foo/blobs/sha256:{HEX256.upper()}",
            "foo/blobs/md5:00",
        ):
            self.assert_error(path, "GET", DIGEST_INVALID, 400)

    def test_bad_name(self) -> None:
        """A route whose name breaks the grammar is NAME_INVALID."""
        for path, method in [
            (f"Foo/blobs/{DIGEST}", "GET"),
            (f"foo//bar/blobs/{DIGEST}", "GET"),
            ("-foo/blobs/uploads/", "POST"),
            (f"{'a' * 256}/blobs/uploads/", "POST"),
            ("foo/Bar/blobs/uploads/abc", "PATCH"),
        ]:
            self.assert_error(path, method, NAME_INVALID, 400)


class RequestHeadTests(SynchronousTestCase):
    """L{RequestHead.parse} finds the path below /v2/ in a request target."""

    def test_path_and_query(self) -> None:
        head = RequestHead.parse(b"get", b"/registry/v2/foo/tags/list?n=1", Headers(), "/registry/")
        self.assertEqual((head.method, head.path), ("GET", "foo/tags/list"))
        self.assertEqual(head.query, {"n": ["1"]})
        self.assertIsNone(RequestHead.parse(b"GET", b"/v1/foo", Headers(), "/").path)

    def test_authority_that_does_not_split(self) -> None:
        """
        A target whose authority urlsplit refuses (an unclosed IPv6
        address) is for no endpoint: it was a ValueError, a 500.
        """
        for uri in (b"//[", b"//[/v2/", b"http://[::1/v2/_catalog", b"//a]/v2/"):
            head = RequestHead.parse(b"GET", uri, Headers(), "/")
            self.assertEqual((head.method, head.path, head.query), ("GET", None, {}), uri)
