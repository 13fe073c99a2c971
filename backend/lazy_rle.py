"""Brush RLE left unparsed in an interactive /predict body until a click needs it.

Why: Label Studio sends every draft, annotation and prediction of the task with each click,
brush RLE mostly (about 1 MB at 100 masks, LS #7029), and a click decodes at most one region of
it (the newest of its label: the session's prior or an edit to adopt). Parsing the rest costs
the click time in proportion to the task's regions (7 ms of ujson for 900 KB on this machine,
under load); the arrays are set aside as text instead and parsed only if decoded.

How: in the raw body, each array that is the value of an `"rle"` key (the key preceded by `{`
or `,`: never text inside a string, where a quote is escaped) and holds only digits, commas and
whitespace, at least MIN_LAZY_BYTES long, is replaced by a placeholder string carrying a nonce
of this request; the smaller text is parsed; each placeholder found as an `rle` value becomes a
`clicksmith.labelstudio.results.RleText`, which every decoder (`rle_to_mask`) parses first.
The one difference from parsing whole: a stored region whose array is not well-formed JSON
(`[1,,2]`) no longer makes the whole body invalid; that region is skipped when decoded, as
any malformed stored region is (`plain_ints`).
Only the tasks keep them: everything else (the context's brush strokes, which the prompt
parser checks as lists) gets its lists back at once. A body this cannot read the same way
(anything that fails to parse after the swap) is parsed whole, as before.
"""

from __future__ import annotations

import os

from clicksmith.labelstudio.results import RleText

MIN_LAZY_BYTES = 512  # shorter arrays are parsed with the rest: not worth a placeholder
_KEY = b'"rle"'
_SPACE = b" \t\r\n"
_RLE_CHARS = b"0123456789," + _SPACE


def plain_ints(text: bytes) -> bool:
    """Whether the array text `text` holds only digits, commas and whitespace (a brush RLE as
    any writer writes it), checked at C speed without parsing. Whether it is well-formed JSON
    is learnt only if it is decoded: a malformed one is then a malformed stored region,
    skipped like any other (clicksmith/labelstudio/regions.py), where parsing the body whole
    refused the request; checking its form here costs more than parsing it (a regex: 14 ms
    for 900 KB, ujson: 6.5 ms)."""
    return not text[1:-1].translate(None, _RLE_CHARS)


def split(raw: bytes) -> tuple[bytes, list[bytes], str]:
    """`raw` with its long RLE arrays replaced by placeholders, the arrays' texts in order,
    and the placeholder prefix (a NUL, "rle:", this call's nonce and ":"; then the index)."""
    nonce = os.urandom(6).hex()
    prefix = f"\0rle:{nonce}:"
    parts: list[bytes] = []
    texts: list[bytes] = []
    last = pos = 0
    size = len(raw)
    while True:
        k = raw.find(_KEY, pos)
        if k < 0:
            break
        pos = k + len(_KEY)
        j = k - 1
        while j >= 0 and raw[j] in _SPACE:
            j -= 1
        if j < 0 or raw[j] not in b"{,":
            continue  # not a key of an object
        m = pos
        while m < size and raw[m] in _SPACE:
            m += 1
        if m >= size or raw[m] != ord(":"):
            continue
        m += 1
        while m < size and raw[m] in _SPACE:
            m += 1
        if m >= size or raw[m] != ord("["):
            continue
        end = raw.find(b"]", m)
        if end < 0:
            break
        text = raw[m:end + 1]
        if len(text) < MIN_LAZY_BYTES or not plain_ints(text):
            continue  # short, or not a plain list of whole numbers: parsed as usual
        parts += [raw[last:m], b'"\\u0000rle:', nonce.encode(), b":%d\"" % len(texts)]
        texts.append(text)
        last = pos = end + 1
    if not texts:
        return raw, [], prefix
    parts.append(raw[last:])
    return b"".join(parts), texts, prefix


def attach(body: object, texts: list[bytes], prefix: str, lazy: bool) -> int:
    """Put each placeholder's RLE back into `body` (in place): an RleText when `lazy`, the
    parsed list otherwise. The number of placeholders found."""
    found = 0
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "rle" and isinstance(value, str) and value.startswith(prefix):
                    index = value[len(prefix):]
                    if index.isdigit() and int(index) < len(texts):
                        rle = RleText(texts[int(index)])
                        node[key] = rle if lazy else rle.values()
                        found += 1
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return found


def parse_predict(raw: bytes, parse) -> object:
    """The /predict body `raw` parsed by `parse` (bytes -> object, None when not JSON), the
    RLE of its tasks' stored regions left as RleText when it is an interactive request (a
    `params.context`); everything else, and any other request, as `parse(raw)` gives it."""
    small, texts, prefix = split(raw)
    if not texts:
        return parse(raw)
    body = parse(small)
    if not isinstance(body, dict):
        return parse(raw)  # read whole, as before (and refused the same way if need be)
    params = body.get("params")
    interactive = isinstance(params, dict) and params.get("context") is not None
    tasks = body.pop("tasks", None) if interactive else None
    try:
        found = attach(body, texts, prefix, lazy=False)
    except ValueError:  # an array outside the tasks that is not JSON: the body is not either
        return parse(raw)
    if tasks is not None:
        found += attach(tasks, texts, prefix, lazy=True)
        body["tasks"] = tasks
    if found != len(texts):  # a placeholder that did not come back where it was put
        return parse(raw)
    return body
