"""An incremental Server-Sent Events parser, as the HTML standard specifies it.

Bytes go in as they arrive (a chunk may end anywhere, even inside a UTF-8 character or
between the CR and LF of a line end); messages come out as each blank line ends one.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SSEMessage", "SSEParser"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched message.

    `event` is "message" for an unnamed message (the only kind the live stream sends).
    `id` is the stream's last event ID when the message was dispatched: an `id` field sets
    it and it carries over to later messages, as `EventSource.lastEventId` does. `retry` is
    the `retry` field of this message's own lines, if it had a valid one. `fragments` holds
    an unnamed message's live fragments by name (see `fdbsync.web.wire`).
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None
    fragments: Mapping[str, str] = field(default_factory=dict)


class SSEParser:
    """Feed it the stream's bytes; it returns the messages they complete.

    It also counts comment lines (`comments`; sse-starlette's pings are comments) and keeps
    the latest valid `retry` value, which the standard applies even without a message.
    """

    def __init__(self) -> None:
        self.comments = 0
        self.retry: int | None = None
        self.last_event_id = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self._message_retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        return self._lines(self._decoder.decode(chunk), final=False)

    def end(self) -> list[SSEMessage]:
        """The stream ended: a last line ended by a lone CR still counts, but a message
        without its blank line is discarded, as the standard says."""
        return self._lines(self._decoder.decode(b"", final=True), final=True)

    def _lines(self, text: str, *, final: bool) -> list[SSEMessage]:
        if self._at_start and text:
            text = text.removeprefix("\ufeff")
            self._at_start = False
        # What is left of the buffer is one unfinished line, so only its last character
        # (a CR that may start a CRLF) needs looking at again.
        scanned = max(len(self._buffer) - 1, 0)
        self._buffer += text
        messages: list[SSEMessage] = []
        position = 0
        for match in _LINE_END.finditer(self._buffer, scanned):
            if match.group() == "\r" and match.end() == len(self._buffer) and not final:
                break  # maybe the first half of a CRLF split between chunks
            message = self._line(self._buffer[position : match.start()])
            if message is not None:
                messages.append(message)
            position = match.end()
        self._buffer = "" if final else self._buffer[position:]
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._message_retry = int(value)
        # Any other field is ignored.
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, retry = self._data, self._event, self._message_retry
        self._data, self._event, self._message_retry = [], "", None
        joined = "\n".join(data)
        if not joined:  # no data, or one empty data line: EventSource dispatches nothing
            return None
        return SSEMessage(data=joined, event=event or "message", id=self.last_event_id, retry=retry)
