# -*- test-case-name: tests.test_drivers_s3 -*-
"""
The parameters of the C{s3} storage driver: Distribution's C{s3-aws}
parameters, checked and typed, and the botocore client they describe.

Values may be given with their YAML types or as strings (C{"true"},
C{"10485760"}), since C{REGISTRY_STORAGE_S3_*} environment overrides are
strings, and Distribution accepts both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from txregistry.config import ConfigError, check_parameters, parse_duration

SECTION = "storage.s3"

MIN_CHUNK_SIZE = 5 * 1024 * 1024
# S3 refuses a part (copied or uploaded) larger than this.
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 10 * 1024 * 1024
DEFAULT_COPY_CHUNK_SIZE = 32 * 1024 * 1024
DEFAULT_COPY_THRESHOLD = 32 * 1024 * 1024
DEFAULT_COPY_CONCURRENCY = 100
# A hanging bucket costs a client (maxretries + 1) x readtimeout before its
# 503: 30 s by default, well inside the 60 s that proxies such as nginx wait
# for an answer.  S3 itself keeps slow calls (completing an upload, copying)
# alive by sending whitespace, so the read timeout only cuts silence.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 1

# Distribution's "NONE" sends no storage class at all.
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "NONE",
)
OBJECT_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)

_BOOL = (bool, str)
_INT = (int, str)
_SPEC: dict[str, Any] = {
    "region": str,
    "regionendpoint": str,
    "bucket": str,
    "accesskey": str,
    "secretkey": str,
    "sessiontoken": str,
    "secure": _BOOL,
    "skipverify": _BOOL,
    "v4auth": _BOOL,
    "forcepathstyle": _BOOL,
    "usedualstack": _BOOL,
    "accelerate": _BOOL,
    "encrypt": _BOOL,
    "keyid": str,
    "chunksize": _INT,
    "multipartcopychunksize": _INT,
    "multipartcopymaxconcurrency": _INT,
    "multipartcopythresholdsize": _INT,
    "rootdirectory": str,
    "storageclass": str,
    "objectacl": str,
    "useragent": str,
    "loglevel": str,
    # txregistry's own: how long one request to the bucket may take, and
    # how often a failed one is tried again, which bound how long a client
    # waits for its 503 when the bucket is down.
    "connecttimeout": _INT,
    "readtimeout": _INT,
    "maxretries": _INT,
}


@dataclass(frozen=True)
class S3Parameters:
    """
    The C{s3} driver's parameters, with Distribution's defaults.

    @ivar root: the key prefix every driver path is stored under: the
        C{rootdirectory} without its slashes, followed by C{/} unless empty.
    """

    bucket: str
    region: str
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    secure: bool = True
    skip_verify: bool = False
    v4_auth: bool = True
    force_path_style: bool = False
    dual_stack: bool = False
    accelerate: bool = False
    encrypt: bool = False
    key_id: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    copy_chunk_size: int = DEFAULT_COPY_CHUNK_SIZE
    copy_concurrency: int = DEFAULT_COPY_CONCURRENCY
    copy_threshold: int = DEFAULT_COPY_THRESHOLD
    root: str = ""
    storage_class: str = "STANDARD"
    object_acl: str = "private"
    user_agent: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES

    def put_arguments(self) -> dict[str, Any]:
        """What every request that creates an object carries (ACL, class, encryption)."""
        arguments: dict[str, Any] = {
            "ContentType": "application/octet-stream",
            "ACL": self.object_acl,
        }
        if self.storage_class != "NONE":
            arguments["StorageClass"] = self.storage_class
        if self.encrypt:
            arguments["ServerSideEncryption"] = "aws:kms" if self.key_id else "AES256"
            if self.key_id:
                arguments["SSEKMSKeyId"] = self.key_id
        return arguments

    def client(self) -> Any:
        """A botocore S3 client for these parameters (thread-safe, as botocore's are)."""
        import botocore.session
        from botocore.config import Config

        endpoint = self.endpoint
        if endpoint is not None and "://" not in endpoint:
            endpoint = ("https://" if self.secure else "http://") + endpoint
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"max_attempts": self.max_retries + 1, "mode": "standard"},
            max_pool_connections=64,
            signature_version="s3v4" if self.v4_auth else "s3",
            user_agent_extra=self.user_agent,
            s3={
                "addressing_style": "path" if self.force_path_style else "auto",
                "use_dualstack_endpoint": self.dual_stack,
                "use_accelerate_endpoint": self.accelerate,
            },  # type: ignore[arg-type]
        )
        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=endpoint,
            use_ssl=self.secure,
            verify=not self.skip_verify,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            config=config,
        )


def parse_parameters(parameters: Mapping[str, Any] | None) -> S3Parameters:
    """
    Check and type the C{storage.s3} section.

    @raise ConfigError: naming the key, for an unknown or missing key or a
        value of the wrong type or range.
    """
    check_parameters(SECTION, parameters, _SPEC)
    given: Mapping[str, Any] = parameters or {}
    for required in ("region", "bucket"):
        if not given.get(required):
            raise ConfigError(f"{SECTION}.{required}", "is required")
    chunk_size = _integer(given, "chunksize", DEFAULT_CHUNK_SIZE)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_PART_SIZE:
        raise ConfigError(
            f"{SECTION}.chunksize", f"must be between {MIN_CHUNK_SIZE} and {MAX_PART_SIZE}"
        )
    copy_chunk_size = _integer(given, "multipartcopychunksize", DEFAULT_COPY_CHUNK_SIZE)
    if not MIN_CHUNK_SIZE <= copy_chunk_size <= MAX_PART_SIZE:
        raise ConfigError(
            f"{SECTION}.multipartcopychunksize",
            f"must be between {MIN_CHUNK_SIZE} and {MAX_PART_SIZE}",
        )
    copy_concurrency = _integer(given, "multipartcopymaxconcurrency", DEFAULT_COPY_CONCURRENCY)
    if copy_concurrency < 1:
        raise ConfigError(f"{SECTION}.multipartcopymaxconcurrency", "must be at least 1")
    copy_threshold = _integer(given, "multipartcopythresholdsize", DEFAULT_COPY_THRESHOLD)
    if not 0 <= copy_threshold <= MAX_PART_SIZE:
        raise ConfigError(
            f"{SECTION}.multipartcopythresholdsize", f"must be between 0 and {MAX_PART_SIZE}"
        )
    storage_class = given.get("storageclass", "STANDARD")
    if storage_class not in STORAGE_CLASSES:
        raise ConfigError(f"{SECTION}.storageclass", f"must be one of {', '.join(STORAGE_CLASSES)}")
    object_acl = given.get("objectacl", "private")
    if object_acl not in OBJECT_ACLS:
        raise ConfigError(f"{SECTION}.objectacl", f"must be one of {', '.join(OBJECT_ACLS)}")
    max_retries = _integer(given, "maxretries", DEFAULT_MAX_RETRIES)
    if max_retries < 0:
        raise ConfigError(f"{SECTION}.maxretries", "must not be negative")
    return S3Parameters(
        bucket=given["bucket"],
        region=given["region"],
        endpoint=given.get("regionendpoint") or None,
        access_key=given.get("accesskey") or None,
        secret_key=given.get("secretkey") or None,
        session_token=given.get("sessiontoken") or None,
        secure=_boolean(given, "secure", True),
        skip_verify=_boolean(given, "skipverify", False),
        v4_auth=_boolean(given, "v4auth", True),
        force_path_style=_boolean(given, "forcepathstyle", False),
        dual_stack=_boolean(given, "usedualstack", False),
        accelerate=_boolean(given, "accelerate", False),
        encrypt=_boolean(given, "encrypt", False),
        key_id=given.get("keyid") or None,
        chunk_size=chunk_size,
        copy_chunk_size=copy_chunk_size,
        copy_concurrency=copy_concurrency,
        copy_threshold=copy_threshold,
        root=_root(given.get("rootdirectory", "")),
        storage_class=storage_class,
        object_acl=object_acl,
        user_agent=given.get("useragent") or None,
        connect_timeout=_seconds(given, "connecttimeout", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_seconds(given, "readtimeout", DEFAULT_READ_TIMEOUT),
        max_retries=max_retries,
    )


def _root(rootdirectory: str) -> str:
    stripped = rootdirectory.strip("/")
    return stripped + "/" if stripped else ""


def _boolean(given: Mapping[str, Any], key: str, default: bool) -> bool:
    value = given.get(key, default)
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"{SECTION}.{key}", "must be a boolean")


def _integer(given: Mapping[str, Any], key: str, default: int) -> int:
    value = given.get(key, default)
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{SECTION}.{key}", "must be an integer") from None


def _seconds(given: Mapping[str, Any], key: str, default: float) -> float:
    """A duration ("5s", "500ms") or a whole number of seconds."""
    value = given.get(key)
    if value is None:
        return default
    if isinstance(value, int) or value.strip().isdigit():
        seconds = float(value)
    else:
        seconds = parse_duration(f"{SECTION}.{key}", value)
    if seconds <= 0:
        raise ConfigError(f"{SECTION}.{key}", "must be positive")
    return seconds
