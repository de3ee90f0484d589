"""``ppy stubs php``: a typed PHP class generated from the discovery document (README.md).

One method per exposed function (``billing.invoice.total`` → ``billing_invoice_total()``),
native PHP types and richer PHPDoc types from the JSON Schemas that ``rpc.discover``
derives from the Python annotations, the docstring as PHPDoc. The document comes from a
running server (``--url``, default ``PPY_URL`` / ``PPY_HOST``:``PPY_PORT``) or straight
from an app folder (``ppy stubs php APP_DIR``), so stubs can be built without a server.

Calls go through ``Ppy\\Client::request()`` with keyword arguments (a JSON object), so
optional parameters can be left out. Functions taking ``*args`` or positional-only
parameters are called positionally instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from ppy.app.schema import DECIMAL_PATTERN
from ppy.cli import add_client_args, client_from_args
from ppy.client.errors import ClientError, RemoteError

_IDENT = r"[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*"
_NAMESPACE = re.compile(rf"{_IDENT}(\\{_IDENT})*\Z")
_CLASS = re.compile(rf"{_IDENT}\Z")
_PARAMS_VAR = "$__ppyParams"  # the generated local; no Python parameter is renamed onto it


def register(subparsers: Any) -> None:
    stubs = subparsers.add_parser("stubs", help="generate typed client code from the discovery document")
    languages = stubs.add_subparsers(dest="language", required=True)
    php = languages.add_parser("php", help="a PHP class with one typed method per function (print to stdout)")
    php.add_argument("app_dir", nargs="?", type=Path, default=None,
                     help="read this app folder directly instead of asking a running server")
    php.add_argument("--namespace", default="", help="PHP namespace of the class, e.g. App\\Python")
    php.add_argument("--class-name", default="Api", help="PHP class name (default: Api)")
    add_client_args(php)
    php.set_defaults(func=cmd_stubs_php)


def cmd_stubs_php(args: argparse.Namespace) -> int:
    namespace = args.namespace.strip("\\")
    if namespace and not _NAMESPACE.match(namespace):
        print(f"ppy stubs: --namespace {args.namespace!r} is not a PHP namespace; use names like App\\Python",
              file=sys.stderr)
        return 2
    if not _CLASS.match(args.class_name):
        print(f"ppy stubs: --class-name {args.class_name!r} is not a PHP class name; use a name like Api",
              file=sys.stderr)
        return 2
    doc = _document(args)
    if doc is None:
        return 1
    try:
        sys.stdout.write(render_php(doc, namespace, args.class_name))
    except ValueError as exc:
        print(f"ppy stubs: {exc}", file=sys.stderr)
        return 1
    return 0


def _document(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.app_dir is not None:
        return _local_document(args.app_dir)
    try:
        with client_from_args(args) as client:
            doc: dict[str, Any] = client.request("rpc.discover")
            return doc
    except RemoteError as exc:
        print(f"ppy stubs: the server refused rpc.discover: {exc.message}", file=sys.stderr)
        return None
    except ClientError as exc:
        if args.url:
            print(f"ppy stubs: cannot read the discovery document from {args.url}: {exc}; "
                  "start `ppy serve` or pass an APP_DIR", file=sys.stderr)
            return None
        print("ppy stubs: no server answered; reading the app folder directly", file=sys.stderr)
        return _local_document(None)


def _local_document(app_dir: Path | None) -> dict[str, Any] | None:
    from ppy import __version__
    from ppy.app.discover import document
    from ppy.app.registry import Registry
    from ppy.server.main import default_app_dir

    folder = Path(app_dir or default_app_dir())
    if not folder.is_dir():
        print(f"ppy stubs: app folder {folder} does not exist; pass the folder holding your .py files",
              file=sys.stderr)
        return None
    # Round-trip through JSON so defaults look exactly as a server would send them (dates as strings).
    registry = Registry.build(folder)
    for entry, why in registry.failed.items():
        print(f"ppy stubs: entry {entry!r} failed to import and is left out: {why}", file=sys.stderr)
    doc: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(document(registry, __version__)))
    return doc


# -- types ----------------------------------------------------------------------------------------

class PhpType:
    """A PHP native type (for the signature) and a PHPDoc type (richer: shapes, lists, literals)."""

    def __init__(self, native: str, doc: str) -> None:
        self.native = native
        self.doc = doc


MIXED = PhpType("mixed", "mixed")


def php_type(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> PhpType:
    """Map one JSON Schema (as msgspec writes them) to PHP types."""
    if depth > 6:
        return PhpType("mixed", "mixed")
    if "$ref" in schema:
        target = defs.get(schema["$ref"].rsplit("/", 1)[-1])
        return php_type(target, defs, depth + 1) if isinstance(target, dict) else MIXED
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _union([php_type(s, defs, depth + 1) for s in schema[key]])
    if "enum" in schema:
        values = schema["enum"]
        natives = sorted({_literal_native(v) for v in values})
        return PhpType("|".join(natives) if "mixed" not in natives else "mixed",
                       "|".join(_php_literal(v) for v in values))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([php_type({**schema, "type": k}, defs, depth + 1) for k in kind])
    if kind == "string":
        if schema.get("format") == "decimal" or schema.get("pattern") == DECIMAL_PATTERN:
            return PhpType("string|int|float", "numeric-string|int|float")
        return PhpType("string", "string")
    if kind == "integer":
        return PhpType("int", "int")
    if kind == "number":
        return PhpType("float", "float")
    if kind == "boolean":
        return PhpType("bool", "bool")
    if kind == "null":
        return PhpType("null", "null")
    if kind == "array":
        tuple_items = schema.get("prefixItems", schema.get("items"))  # 2020-12, or draft-07 (a list)
        if isinstance(tuple_items, list):
            items = [php_type(s, defs, depth + 1).doc for s in tuple_items]
            return PhpType("array", "array{" + ", ".join(items) + "}")
        item = php_type(schema.get("items", {}), defs, depth + 1)
        return PhpType("array", f"list<{item.doc}>")
    if kind == "object":
        props = schema.get("properties")
        if isinstance(props, dict) and props:
            required = set(schema.get("required", []))
            fields = [f"{name}{'' if name in required else '?'}: {php_type(s, defs, depth + 1).doc}"
                      for name, s in props.items() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
            if len(fields) == len(props):
                return PhpType("array", "array{" + ", ".join(fields) + "}")
        extra = schema.get("additionalProperties")
        value = php_type(extra, defs, depth + 1).doc if isinstance(extra, dict) else "mixed"
        return PhpType("array", f"array<string, {value}>")
    return MIXED


def _definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """Named schemas a ``$ref`` may point to: draft-07 ``definitions`` (discovery) or ``$defs``."""
    found: dict[str, Any] = {**schema.get("$defs", {}), **schema.get("definitions", {})}
    return found


def _union(members: list[PhpType]) -> PhpType:
    natives: list[str] = []
    docs: list[str] = []
    for m in members:
        for part in m.native.split("|"):
            if part not in natives:
                natives.append(part)
        if m.doc not in docs:
            docs.append(m.doc)
    doc = "|".join(docs)
    if "mixed" in natives:
        return PhpType("mixed", doc)
    if natives == ["null"]:
        return PhpType("mixed", "null")
    return PhpType(_nullable_union(natives), doc)


def _nullable_union(natives: list[str]) -> str:
    rest = [n for n in natives if n != "null"]
    if len(rest) == len(natives):
        return "|".join(natives)
    return f"?{rest[0]}" if len(rest) == 1 else "|".join([*rest, "null"])


def _literal_native(value: Any) -> str:
    return {str: "string", bool: "bool", int: "int", float: "float", type(None): "null"}.get(type(value), "mixed")


def _php_literal(value: Any) -> str:
    """A JSON value as PHP source."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eE") else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_php_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{_php_literal(str(k))} => {_php_literal(v)}" for k, v in value.items()) + "]"
    raise ValueError(f"cannot write {value!r} as PHP")


def _native(native: str) -> str:
    """PHP 8.1 has no standalone ``null`` type."""
    return "mixed" if native == "null" else native


def _fits(native: str, value: Any) -> bool:
    """Whether a default value is allowed for a parameter of this native type."""
    if native == "mixed" or value is None:
        return True
    allowed = {n.lstrip("?") for n in native.split("|")}
    kind = _literal_native(value) if not isinstance(value, (list, dict)) else "array"
    return kind in allowed or (kind == "int" and "float" in allowed)


def _nullable(native: str) -> str:
    if native in ("mixed", "null") or native.startswith("?") or "null" in native.split("|"):
        return native
    return f"?{native}" if "|" not in native else f"{native}|null"


# -- rendering ------------------------------------------------------------------------------------

def _comment(text: str) -> list[str]:
    return [line.rstrip().replace("*/", "*\\/") for line in text.strip().splitlines()]


def _variable(name: str) -> str:
    return "$" + (name + "_" if name in ("this", "GLOBALS") or "$" + name == _PARAMS_VAR else name)


def render_method(method: dict[str, Any]) -> list[str]:
    name: str = method["name"]
    php_name = name.replace(".", "_")
    params: list[dict[str, Any]] = method.get("params", [])
    kinds = [p.get("x-kind", "positional_or_keyword") for p in params]
    positional = any(k in ("positional_only", "var_positional") for k in kinds)
    notes: list[str] = []
    if positional and any(k == "keyword_only" and p.get("required") for k, p in zip(kinds, params, strict=True)):
        notes.append("Takes required keyword-only and positional-only/variadic parameters, which JSON-RPC cannot "
                     "send together: pass the params array yourself.")
        sig, body, docs = ["array|object $params = []"], ["$__ppyParams = $params;"], []
        docs.append("@param array<int|string, mixed>|object $params positional (list) or keyword (associative)")
    else:
        sig, body, docs = _parameters(params, kinds, positional, notes)
    result = method.get("result", {})
    defs: dict[str, Any] = _definitions(result.get("schema", {}))
    returns = php_type(result.get("schema", {}), defs)
    void = result.get("x-python-type") == "None"
    streams = bool(method.get("x-ppy-stream"))  # [stream] a generator: a PHP Generator of its items
    if streams:
        void = False
        returns = PhpType("\\Generator", f"\\Generator<int, {returns.doc}, mixed, mixed>")
    lines = ["    /**"]
    for line in _comment(method.get("description") or method.get("summary") or ""):
        lines.append(f"     * {line}".rstrip())
    if len(lines) > 1:
        lines.append("     *")
    lines.append(f"     * Python: {method.get('x-signature', name)}".replace("*/", "*\\/"))
    for note in notes:
        lines.append(f"     * {note}")
    lines.append("     *")
    lines += [f"     * {d}".replace("*/", "*\\/") for d in docs]
    lines.append(f"     * @return {'void' if void else returns.doc}")
    lines.append("     * @throws \\Ppy\\PpyException RemoteException subclasses, ConnectionException, TimeoutException")
    lines.append("     */")
    ret = "void" if void else _native(returns.native)
    lines.append(f"    public function {php_name}({', '.join(sig)}): {ret}")
    lines.append("    {")
    lines += [f"        {b}" for b in body]
    request = "streamRequest" if streams else "request"
    call = f"$this->client->{request}({_php_literal(name)}, {_PARAMS_VAR})"
    lines.append(f"        {call};" if void else f"        return {call};")
    lines.append("    }")
    return lines


def _parameters(params: list[dict[str, Any]], kinds: list[str], positional: bool,
                notes: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Signature parts, body lines building the params, and @param lines."""
    required_sig: list[str] = []
    optional_sig: list[str] = []
    tail_sig: list[str] = []
    docs: list[str] = []
    fixed: list[str] = []  # entries of the params array literal
    after: list[str] = []  # statements adding optional entries
    for kind, p in zip(kinds, params, strict=True):
        schema = dict(p.get("schema", {}))
        defs = _definitions(schema)
        schema.pop("$defs", None)
        schema.pop("definitions", None)
        has_default = "default" in schema
        default = schema.pop("default", None)
        t = php_type(schema, defs)
        t = PhpType(_native(t.native), t.doc)
        if has_default and not _fits(t.native, default):
            t = PhpType("mixed", t.doc)
        var = _variable(p["name"])
        key = _php_literal(p["name"])
        doc_type = t.doc
        if kind == "var_positional":
            tail_sig.append(f"{t.native} ...{var}")
            docs.append(f"@param {doc_type} ...{var} Python *{p['name']}: {p.get('x-python-type', 'Any')}")
            fixed.append(f"...array_values({var})")
            continue
        if kind == "var_keyword":
            if positional:
                notes.append(f"**{p['name']} cannot be sent along positional arguments; use $client->call().")
                continue
            tail_sig.append(f"array {var} = []")
            docs.append(f"@param array<string, {doc_type}> {var} more keyword arguments (Python **{p['name']})")
            after.append(f"{_PARAMS_VAR} += {var};")
            continue
        if kind == "keyword_only" and positional:
            notes.append(f"Keyword-only parameter {p['name']!r} keeps its default.")
            continue
        docs.append(f"@param {doc_type if p.get('required') else _doc_nullable(doc_type, default, has_default)} "
                    f"{var} Python {p['name']}: {p.get('x-python-type', 'Any')}")
        entry = var if positional else f"{key} => {var}"
        if p.get("required"):
            required_sig.append(f"{t.native} {var}")
            fixed.append(entry)
        elif has_default:
            native = _nullable(t.native) if default is None else t.native
            optional_sig.append(f"{native} {var} = {_php_literal(default)}")
            fixed.append(entry)
        else:  # a default JSON cannot show: leave the argument out unless given
            optional_sig.append(f"{_nullable(t.native)} {var} = null")
            target = f"{_PARAMS_VAR}[]" if positional else f"{_PARAMS_VAR}[{key}]"
            after.append(f"if ({var} !== null) {{ {target} = {var}; }}")
    body = [f"{_PARAMS_VAR} = [{', '.join(fixed)}];", *after]
    if not positional and not fixed:
        body[0] = f"{_PARAMS_VAR} = [];"
    return [*required_sig, *optional_sig, *tail_sig], body, docs


def _doc_nullable(doc: str, default: Any, has_default: bool) -> str:
    return doc if (has_default and default is not None) or "null" in doc.split("|") else f"{doc}|null"


def render_php(doc: dict[str, Any], namespace: str = "", class_name: str = "Api") -> str:
    methods = doc.get("methods", [])
    seen: dict[str, str] = {}
    for m in methods:
        php_name = m["name"].replace(".", "_")
        if php_name in seen:
            raise ValueError(f"{seen[php_name]!r} and {m['name']!r} both become PHP method {php_name}(); "
                             "rename one of the Python functions or entries")
        seen[php_name] = m["name"]
    info = doc.get("info", {})
    title = str(info.get("title", "ppy app")).replace("*/", "")
    out = ["<?php", "", "/**",
           f" * Typed access to the Python functions of {title} (ppy {info.get('version', '')}).",
           " *",
           " * Generated by `ppy stubs php` from the discovery document: regenerate it when the",
           " * Python side changes rather than editing it. Each method calls one Python function",
           " * through Ppy\\Client; errors are thrown as Ppy\\PpyException subclasses.",
           " */", ""]
    if namespace:
        out += [f"namespace {namespace};", ""]
    out += [f"final class {class_name}", "{",
            "    public function __construct(private \\Ppy\\Client $client)",
            "    {",
            "    }"]
    for m in sorted(methods, key=lambda m: str(m["name"])):
        out.append("")
        out += render_method(m)
    out += ["}", ""]
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - handy when debugging a document
    print(render_php(json.load(sys.stdin)))
