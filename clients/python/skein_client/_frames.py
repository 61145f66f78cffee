"""A streamed call's frames (docs/calls.md, "Stream"), read as the body arrives: CBOR items back to
back (``application/cbor-seq``, RFC 8742) or one JSON text per line (``application/x-ndjson``).

Every frame is bounded: bytes are kept only while they can still form a frame of at most
``max_frame_bytes`` (past it: :class:`BadResponse`). The CBOR scanner walks item heads (RFC 8949
section 3) and resumes where the last chunk ended, so each byte is looked at once and a large
byte string is skipped by its length. The same reader as the TypeScript client's
(agent/client/frames.ts)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import cbor2

from .errors import BadResponse, SkeinError, error_for

CBOR_SEQ = "application/cbor-seq"
NDJSON = "application/x-ndjson"
_MAX_DEPTH = 128
_INDEFINITE = -1


def _too_large(limit: int) -> BadResponse:
    return BadResponse("SKEIN_ERR_BAD_RESPONSE", f"a stream frame is larger than {limit} bytes (max_frame_bytes); the stream was reset", {"limit": limit})


def _malformed(why: str) -> BadResponse:
    return BadResponse("SKEIN_ERR_BAD_RESPONSE", f"undecodable stream frame: {why}")


class FrameReader:
    def __init__(self, media_type: str, max_frame_bytes: int) -> None:
        self.media_type = media_type
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0  # where scanning resumes; bytes before it belong to the frame being read
        self._open: List[int] = []  # CBOR: items each open container still expects

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def push(self, chunk: bytes) -> List[Any]:
        """Takes the next chunk of the body; returns the frames it completed, decoded."""
        self._buf += chunk
        frames = []
        start = 0
        while True:
            end = self._next(start)
            if end is None:
                break
            frame = bytes(self._buf[start:end])
            frames.append(self._decode(frame[:-1] if self.media_type == NDJSON else frame))
            start = self._pos = end
        del self._buf[:start]
        self._pos -= start
        if len(self._buf) > self.max_frame_bytes:
            raise _too_large(self.max_frame_bytes)
        return frames

    def _next(self, start: int) -> Optional[int]:
        if self.media_type == NDJSON:
            nl = self._buf.find(b"\n", self._pos)
            if nl == -1:
                self._pos = len(self._buf)
                return None
            if nl + 1 - start > self.max_frame_bytes:
                raise _too_large(self.max_frame_bytes)
            return nl + 1
        return self._scan_cbor(start)

    def _scan_cbor(self, start: int) -> Optional[int]:
        buf, open_ = self._buf, self._open
        while True:
            pos = self._pos
            if pos >= len(buf):
                return None
            initial = buf[pos]
            if initial == 0xFF:
                if not open_ or open_[-1] != _INDEFINITE:
                    raise _malformed("a break byte outside an indefinite-length item")
                open_.pop()
                self._pos = pos + 1
                if self._item_done():
                    return self._pos
                continue
            major, info = initial >> 5, initial & 0x1F
            arg, head = info, 1
            if 24 <= info <= 27:
                head += 1 << (info - 24)
                if pos + head > len(buf):
                    return None
                arg = int.from_bytes(buf[pos + 1 : pos + head], "big")
            elif info == 31:
                if major < 2 or major > 5:
                    raise _malformed(f"indefinite length on major type {major}")
                arg = _INDEFINITE
            elif info > 27:
                raise _malformed(f"reserved additional information {info}")
            if major in (2, 3):
                if arg == _INDEFINITE:
                    self._enter(_INDEFINITE)
                    self._pos = pos + head
                    continue
                end = pos + head + arg
                if end - start > self.max_frame_bytes:
                    raise _too_large(self.max_frame_bytes)
                if end > len(buf):
                    return None
                self._pos = end
            elif major in (4, 5):
                self._pos = pos + head
                if arg != 0:
                    self._enter(_INDEFINITE if arg == _INDEFINITE else arg * 2 if major == 5 else arg)
                    continue
            elif major == 6:
                self._pos = pos + head  # a tag wraps exactly one item
                self._enter(1)
                continue
            else:
                self._pos = pos + head  # integers, simple values, floats: the head is the item
            if self._item_done():
                return self._pos

    def _enter(self, count: int) -> None:
        if len(self._open) >= _MAX_DEPTH:
            raise _malformed(f"nesting deeper than {_MAX_DEPTH} levels")
        self._open.append(count)

    def _item_done(self) -> bool:
        open_ = self._open
        while open_:
            if open_[-1] == _INDEFINITE:
                return False
            open_[-1] -= 1
            if open_[-1] > 0:
                return False
            open_.pop()
        return True

    def _decode(self, frame: bytes) -> Any:
        try:
            return cbor2.loads(frame) if self.media_type == CBOR_SEQ else json.loads(frame)
        except (ValueError, cbor2.CBORDecodeError) as err:
            raise _malformed(str(err)) from None


class Frames:
    """The frames of one stream, checked: items, then exactly one ``done`` (whose count must match) or ``error``."""

    def __init__(self, request_id: str) -> None:
        self.received = 0
        self.finished = False
        self.request_id = request_id

    def take(self, frame: Any) -> List[Any]:
        """``[item]`` for an item frame, ``[]`` for done; raises the error an error frame names."""
        if self.finished:
            raise BadResponse("SKEIN_ERR_BAD_RESPONSE", "a frame after the last (done or error) frame")
        keys = sorted(frame) if isinstance(frame, dict) else []
        if keys == ["item"]:
            self.received += 1
            return [frame["item"]]
        if isinstance(frame, dict) and frame.get("done") is True:
            if frame.get("items") != self.received:
                raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"the done frame counts {frame.get('items')} items, {self.received} arrived")
            self.finished = True
            return []
        if keys == ["error"]:
            self.finished = True
            raise self._error(frame["error"])
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"unexpected stream frame with keys {keys} (expected item, done or error)")

    def cut(self, pending: int) -> BadResponse:
        held = f" ({pending} bytes of an unfinished frame)" if pending else ""
        return BadResponse("SKEIN_ERR_BAD_RESPONSE", f"the stream ended without a done or error frame after {self.received} items{held}: it was cut", {"items": self.received})

    def _error(self, value: Any) -> SkeinError:
        body: Dict[str, Any] = value if isinstance(value, dict) else {}
        code = body.get("code")
        if not isinstance(code, str) or not code.startswith("SKEIN_ERR_"):
            return BadResponse("SKEIN_ERR_BAD_RESPONSE", f"an error frame without a known code: {json.dumps(value, default=repr)[:200]}")
        meta = body.get("meta")
        details = {**(meta if isinstance(meta, dict) else {}), "requestId": body.get("requestId", self.request_id)}
        return error_for(code, str(body.get("message") or code), details)
