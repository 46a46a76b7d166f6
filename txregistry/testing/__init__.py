"""
Helpers for testing txregistry and what plugs into it, a module each:

  - C{drivers}: the test suite every storage driver must pass (C{DriverTestsMixin}).
  - C{process}: servers as processes on 127.0.0.1, and registries among them (ours or
    Distribution's reference binary).
  - C{client}: a small blocking HTTP client for tests and benchmarks.
  - C{s3server}: moto's S3 server as a process, which can be paused to play an outage.
  - C{redisserver}: Debian's C{redis-server} as a process, which can be paused, killed
    and restarted on its port, and a small blocking client to look inside it.
  - C{nginx}: nginx as a round-robin load balancer in front of registry processes.
  - C{certificates}: a test CA, and server and client certificates, as PEM files.
  - C{tokenserver}: a token server of Distribution's token spec, for the C{token}
    access controller.
"""
