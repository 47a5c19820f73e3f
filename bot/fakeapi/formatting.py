"""Telegram-style text formatting: HTML / MarkdownV2 / Markdown to plain text + entities.

Mirrors what the real Bot API does with ``parse_mode``: markup is stripped, entities are
produced with UTF-16 offsets, surrounding whitespace is trimmed, and malformed markup is
rejected with the same kind of ``can't parse entities`` error.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

Entity = dict[str, Any]

RESERVED_V2 = set("_*[]()~`>#+-=|{}.!")

_HTML_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}


class EntityParseError(ValueError):
    """Raised for malformed markup; str() is the part after ``can't parse entities: ``."""


class UnsupportedParseModeError(ValueError):
    """Raised for a ``parse_mode`` other than HTML, Markdown or MarkdownV2."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


def _user_id(link: str) -> int:
    try:
        return int(link.split("=", 1)[1])
    except ValueError:
        raise EntityParseError(f"Wrong user identifier in {link!r}") from None


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


class _Builder:
    """Accumulates plain text and entities with UTF-16 offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[Entity] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += utf16_len(text)

    def entity(self, type_: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            ent: Entity = {"type": type_, "offset": start, "length": self.pos - start}
            ent.update({k: v for k, v in extra.items() if v is not None})
            self.entities.append(ent)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _HtmlParser(HTMLParser):
    def __init__(self, src: str) -> None:
        super().__init__(convert_charrefs=True)
        self.src = src
        self.out = _Builder()
        self.stack: list[tuple[str, int, dict[str, str | None]]] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        lines = self.src.split("\n")
        index = sum(len(x) + 1 for x in lines[: line - 1]) + col
        return _byte_offset(self.src, index)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        ok = (
            tag in _HTML_SIMPLE
            or tag in {"a", "blockquote", "tg-emoji"}
            or (tag == "span" and attr.get("class") == "tg-spoiler")
        )
        if not ok:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.stack.append((tag, self.out.pos, attr))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {self._offset()}")
        open_tag, start, attr = self.stack.pop()
        if open_tag != tag:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {self._offset()}, "
                f'expected "</{open_tag}>", found "</{tag}>"'
            )
        out = self.out
        if tag == "a":
            href = attr.get("href") or ""
            if href.startswith("tg://user?id="):
                out.entity("text_mention", start, user={"id": _user_id(href)})
            else:
                out.entity("text_link", start, url=href)
        elif tag == "span":
            out.entity("spoiler", start)
        elif tag == "blockquote":
            kind = "expandable_blockquote" if "expandable" in attr else "blockquote"
            out.entity(kind, start)
        elif tag == "tg-emoji":
            out.entity("custom_emoji", start, custom_emoji_id=attr.get("emoji-id"))
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre":
            lang = (attr.get("class") or "").removeprefix("language-")
            if lang:
                # Telegram folds <pre><code class="language-x"> into one pre entity.
                self.stack[-1][2]["language"] = lang
            else:
                out.entity("code", start)
        elif tag == "pre":
            out.entity("pre", start, language=attr.get("language"))
        else:
            out.entity(_HTML_SIMPLE[tag], start)

    def handle_data(self, data: str) -> None:
        self.out.add(data)


def parse_html(src: str) -> tuple[str, list[Entity]]:
    """Parse Telegram's HTML subset."""
    parser = _HtmlParser(src)
    parser.feed(src)
    parser.close()
    if parser.stack:
        tag = parser.stack[-1][0]
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{tag}"')
    return parser.out.text, parser.out.entities


_V2_NAMES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
_V2_TITLES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}


def parse_markdown_v2(src: str) -> tuple[str, list[Entity]]:
    """Parse MarkdownV2, enforcing escaping of reserved characters."""
    out = _Builder()
    stack: list[tuple[str, int, int]] = []  # (marker, output start, source index)
    i, n = 0, len(src)
    line_start = True
    quote_start: int | None = None

    def reserved(ch: str) -> EntityParseError:
        return EntityParseError(
            f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
        )

    while i < n:
        ch = src[i]
        if line_start and ch == ">":
            if quote_start is None:
                quote_start = out.pos
            i += 1
            line_start = False
            continue
        if line_start and quote_start is not None:
            out.entity("blockquote", quote_start)
            quote_start = None
        line_start = False
        if ch == "\\":
            if i + 1 < n and 0 < ord(src[i + 1]) < 127:
                out.add(src[i + 1])
                i += 2
                continue
            raise reserved(ch)
        if ch == "`":
            if src.startswith("```", i):
                end = src.find("```", i + 3)
                if end < 0:
                    raise EntityParseError(
                        f"Can't find end of Pre entity at byte offset {_byte_offset(src, i)}"
                    )
                body = src[i + 3 : end]
                lang: str | None = None
                if "\n" in body:
                    first, rest = body.split("\n", 1)
                    if first and " " not in first:
                        lang, body = first, rest
                start = out.pos
                out.add(_unescape_code(body))
                out.entity("pre", start, language=lang)
                i = end + 3
                continue
            j = i + 1
            buf: list[str] = []
            while j < n and src[j] != "`":
                if src[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(src[j])
                j += 1
            if j >= n:
                raise EntityParseError(
                    f"Can't find end of Code entity at byte offset {_byte_offset(src, i)}"
                )
            start = out.pos
            out.add("".join(buf))
            out.entity("code", start)
            i = j + 1
            continue
        if ch == "[":
            stack.append(("[", out.pos, i))
            i += 1
            continue
        if ch == "]":
            if not stack or stack[-1][0] != "[":
                raise reserved(ch)
            if i + 1 >= n or src[i + 1] != "(":
                raise reserved(ch)
            j = i + 2
            url: list[str] = []
            while j < n and src[j] != ")":
                if src[j] == "\\" and j + 1 < n:
                    j += 1
                url.append(src[j])
                j += 1
            if j >= n:
                raise EntityParseError(
                    f"Can't find end of a URL at byte offset {_byte_offset(src, i + 1)}"
                )
            _, start, _ = stack.pop()
            target = "".join(url)
            if target.startswith("tg://user?id="):
                out.entity("text_mention", start, user={"id": _user_id(target)})
            else:
                out.entity("text_link", start, url=target)
            i = j + 1
            continue
        marker = None
        if src.startswith("||", i):
            marker = "||"
        elif src.startswith("__", i):
            marker = "__"
        elif ch in "*_~":
            marker = ch
        if marker is not None:
            if stack and stack[-1][0] == marker:
                _, start, _ = stack.pop()
                out.entity(_V2_NAMES[marker], start)
            elif any(m == marker for m, _, _ in stack):
                raise EntityParseError(
                    f"Can't find end of {_V2_TITLES[_V2_NAMES[marker]]} entity at byte offset "
                    f"{_byte_offset(src, i)}"
                )
            else:
                stack.append((marker, out.pos, i))
            i += len(marker)
            continue
        if ch in RESERVED_V2:
            raise reserved(ch)
        out.add(ch)
        if ch == "\n":
            line_start = True
        i += 1
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    if stack:
        marker, _, at = stack[-1]
        name = "TextUrl" if marker == "[" else _V2_TITLES[_V2_NAMES[marker]]
        raise EntityParseError(
            f"Can't find end of {name} entity at byte offset {_byte_offset(src, at)}"
        )
    return out.text, out.entities


def _unescape_code(body: str) -> str:
    return body.replace("\\\\", "\x00").replace("\\`", "`").replace("\x00", "\\")


def parse_markdown(src: str) -> tuple[str, list[Entity]]:
    """Parse legacy Markdown (no nesting, ``*bold* _italic_ `code` [t](url)``)."""
    out = _Builder()
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if ch in "*_":
            end = src.find(ch, i + 1)
            if end < 0:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            start = out.pos
            out.add(src[i + 1 : end])
            out.entity("bold" if ch == "*" else "italic", start)
            i = end + 1
            continue
        if ch == "`":
            fence = "```" if src.startswith("```", i) else "`"
            end = src.find(fence, i + len(fence))
            if end < 0:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            body = src[i + len(fence) : end]
            start = out.pos
            lang: str | None = None
            if fence == "```" and "\n" in body:
                first, rest = body.split("\n", 1)
                if first and " " not in first:
                    lang, body = first, rest
            out.add(body)
            out.entity("pre" if fence == "```" else "code", start, language=lang)
            i = end + len(fence)
            continue
        if ch == "[":
            close = src.find("](", i + 1)
            end = src.find(")", close + 2) if close >= 0 else -1
            if close < 0 or end < 0:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            start = out.pos
            out.add(src[i + 1 : close])
            out.entity("text_link", start, url=src[close + 2 : end])
            i = end + 1
            continue
        out.add(ch)
        i += 1
    return out.text, out.entities


def _trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Strip surrounding whitespace like Telegram does, clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    result: list[Entity] = []
    for ent in entities:
        start = max(ent["offset"] - lead, 0)
        end = min(ent["offset"] + ent["length"] - lead, total)
        if end > start:
            result.append({**ent, "offset": start, "length": end - start})
    return stripped, result


def parse_text(
    text: str, parse_mode: str | None = None, entities: list[Entity] | None = None
) -> tuple[str, list[Entity]]:
    """Return ``(plain_text, entities)`` for a message text or caption.

    Explicit ``entities`` win over ``parse_mode`` (as in the Bot API). Raises
    :class:`EntityParseError` on malformed markup.
    """
    if entities:
        plain, ents = text, [dict(e) for e in entities]
    elif parse_mode:
        mode = parse_mode.lower()
        if mode == "html":
            plain, ents = parse_html(text)
        elif mode == "markdownv2":
            plain, ents = parse_markdown_v2(text)
        elif mode == "markdown":
            plain, ents = parse_markdown(text)
        else:
            raise UnsupportedParseModeError(parse_mode)
    else:
        plain, ents = text, []
    plain, ents = _trim(plain, ents)
    ents.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, ents
