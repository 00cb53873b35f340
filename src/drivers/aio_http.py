"""An aiohttp session for the drivers built on aiohttp libraries (pyfronius), with the bounds
gestor puts on every outside input (the same as :mod:`drivers.http`'s, for requests):

* **time**: ``ClientTimeout(total=timeout_s)`` on the session, and :func:`drivers.aio.run`'s own
  deadline around each read (a device dripping one byte a second is cut at ``timeout_s``);
* **size**: the body is read in chunks and refused past :data:`drivers.http.MAX_BODY_BYTES`
  (after aiohttp's decompression, so a gzip bomb is refused too), :class:`BodyTooLarge`;
* **status**: a non-2xx answer is :class:`HttpStatusError` when the library reads its body (aiohttp
  libraries often parse a 503 page as if it were the answer).

Both errors deliberately do not derive from ``aiohttp.ClientError``: libraries that catch that
(pyfronius turns it into "connection failed") let them through with their reason intact.
aiohttp is imported here, not at the top of the driver package: the daemons start without it.
"""
from __future__ import annotations

from typing import Any

from drivers.http import MAX_BODY_BYTES

CHUNK_BYTES = 16 << 10


class BodyTooLarge(Exception):
    """The answer's body is larger than :data:`drivers.http.MAX_BODY_BYTES`."""


class HttpStatusError(Exception):
    """The device answered a non-2xx HTTP status; ``status`` and ``reason`` as sent."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        busy = ", the device is busy (try again)" if status == 503 else ""
        super().__init__(f"{url}: HTTP {status} {reason}{busy}")
        self.status = status


def bounded_session(timeout_s: float, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """A new ``aiohttp.ClientSession`` whose answers are bounded as above; create it on the loop
    that will use it (:func:`drivers.aio.loop`). No proxy or CA bundle from the environment
    (``trust_env=False``): a device on the LAN is reached directly."""
    import aiohttp

    class BoundedResponse(aiohttp.ClientResponse):
        async def read(self) -> bytes:
            if self._body is None:
                if not 200 <= self.status < 300:
                    self.close()
                    raise HttpStatusError(str(self.url), self.status, self.reason or "")
                buf = bytearray()
                try:
                    while chunk := await self.content.read(CHUNK_BYTES):
                        buf += chunk
                        if len(buf) > max_body_bytes:
                            raise BodyTooLarge(f"{self.url}: answer larger than {max_body_bytes} bytes: refused")
                except BaseException:
                    self.close()
                    raise
                self._body = bytes(buf)
            return await super().read()

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s), response_class=BoundedResponse,
                                 trust_env=False)
