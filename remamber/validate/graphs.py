"""ONNX graphs handed to ``build-engine`` and ``compare`` (and any runtime that loads a graph).

``export`` checks the graphs it writes (export/graph_checks.py); a graph from elsewhere, or edited by
hand, reaches the runtimes directly, and the TensorRT ONNX parser is forgiving in dangerous ways: it
drops attributes the plugin does not declare (a misspelt ``delta_softplus`` silently becomes the
default), finds plugins by name whatever the op-set version, and builds a graph without any scan.
So before any slow work this module refuses:

* a missing, empty, truncated or non-ONNX file, or external data files that are not there;
* a node of the ``remamber`` domain whose op is not a registered scan op (SelectiveScan, SS2DScan);
* an attribute the op's registered ``onnx.defs.OpSchema`` does not declare (with the closest name),
  or of the wrong type, or a plugin lookup attribute with the wrong value;
* the ``remamber`` domain imported at a version no schema has (only version 1 exists);
* custom ops of other domains (no runtime here has them);
* a graph without any scan node, unless the caller allows it (``--allow-no-scan``);
* with ``structural=True``, what the ONNX checker and strict shape inference report. build-engine and
  compare leave it off: the TensorRT plugin and the ORT kernels check shapes and dtypes themselves,
  with messages naming the node, and the checks above are the ones the runtimes skip silently.

Allowed attributes come from the schemas registered by export/scan_onnx.py and export/ss2d_onnx.py,
never from a list here, so a new attribute or op is picked up where it is defined.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from ..errors import InputError

DOMAIN = "remamber"
STANDARD_DOMAINS = ("", "ai.onnx")
SCHEMA_MODULES = ("remamber.export.scan_onnx", "remamber.export.ss2d_onnx")
# String attributes read by the TensorRT ONNX parser to find the plugin: their value must be the
# schema default (the plugin's namespace / version), or the parser looks up another plugin.
PLUGIN_LOOKUP_ATTRIBUTES = ("plugin_namespace", "plugin_version")
MAX_LISTED = 12


class GraphError(InputError):
    """An ONNX file that no runtime should be given; the message lists every problem."""


def register_scan_schemas() -> None:
    """Register every remamber op schema this checkout defines (idempotent)."""
    for name in SCHEMA_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name == name:  # not written yet (e.g. SS2DScan arriving in another change)
                continue
            raise
        register = getattr(module, "register_schema", None)
        if register is not None:
            register()


def scan_schemas() -> dict[str, dict[int, object]]:
    """op_type -> {since_version: OpSchema} for the registered remamber ops."""
    import onnx

    register_scan_schemas()
    out: dict[str, dict[int, object]] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == DOMAIN:
            out.setdefault(schema.name, {})[schema.since_version] = schema
    return out


def _attr_type_name(attr_type) -> str:
    return str(attr_type).rsplit(".", 1)[-1]


def _load(path: Path):
    import onnx

    if path.stat().st_size == 0:
        raise GraphError(f"ONNX file {path} is empty (0 bytes); re-export it with `remamber-deploy export`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, truncated file, ...
        raise GraphError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}: {str(exc)[:200]}); "
            "it may be truncated or of another kind: re-export it with `remamber-deploy export`"
        ) from None
    if model.ir_version <= 0 or not model.graph.node or not model.graph.input:
        raise GraphError(
            f"{path} does not hold an ONNX model (no IR version, nodes or inputs after parsing); "
            "it is not an ONNX file: re-export it with `remamber-deploy export`"
        )
    return model


def _external_files(model, path: Path) -> list[str]:
    from onnx import TensorProto

    missing = set()
    for init in model.graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location" and not (path.parent / entry.value).is_file():
                    missing.add(entry.value)
    return sorted(missing)


def node_problems(model, schemas: dict) -> tuple[list[str], int]:
    """(problems, number of scan nodes) from the op-set imports and the remamber nodes."""
    import onnx

    problems: list[str] = []
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    known_versions = sorted({v for by_version in schemas.values() for v in by_version})
    scans = [n for n in model.graph.node if n.domain == DOMAIN]
    if DOMAIN in versions and versions[DOMAIN] not in known_versions:
        problems.append(
            f"imports the {DOMAIN} domain at version {versions[DOMAIN]}, but this plugin implements version(s) "
            f"{known_versions} only: re-export the graph with this checkout (a v1 plugin must not run a v{versions[DOMAIN]} op)"
        )
    elif scans and DOMAIN not in versions:
        problems.append(f"uses {DOMAIN} ops but does not import the {DOMAIN} domain in opset_import")
    version = versions.get(DOMAIN, 1)
    unknown_ops = sorted({n.op_type for n in scans if n.op_type not in schemas})
    for op in unknown_ops:
        close = difflib.get_close_matches(op, list(schemas), n=1)
        problems.append(f"unknown op {DOMAIN}::{op}" + (f" (did you mean {close[0]}?)" if close else "")
                        + f"; the {DOMAIN} ops are {', '.join(sorted(schemas))}")
    seen: set[tuple] = set()
    for node in scans:
        by_version = schemas.get(node.op_type)
        if not by_version:
            continue
        usable = [v for v in by_version if v <= version]
        schema = by_version[max(usable)] if usable else by_version[min(by_version)]
        declared = schema.attributes
        for attr in node.attribute:
            label = node.name or node.op_type
            if attr.name not in declared:
                key = ("unknown", node.op_type, attr.name)
                if key in seen:
                    continue
                seen.add(key)
                close = difflib.get_close_matches(attr.name, list(declared), n=1)
                count = sum(1 for n in scans if n.op_type == node.op_type and any(a.name == attr.name for a in n.attribute))
                more = f" (and {count - 1} more)" if count > 1 else ""
                problems.append(
                    f"{DOMAIN}::{node.op_type} node {label}{more} has attribute {attr.name!r}, which the op does not "
                    "declare" + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; TensorRT would drop it silently. Declared: {', '.join(sorted(declared))}"
                )
                continue
            expected = declared[attr.name].type
            if _attr_type_name(expected) != onnx.AttributeProto.AttributeType.Name(attr.type):
                key = ("type", node.op_type, attr.name)
                if key not in seen:
                    seen.add(key)
                    problems.append(
                        f"{DOMAIN}::{node.op_type} node {label}: attribute {attr.name} is "
                        f"{onnx.AttributeProto.AttributeType.Name(attr.type)}, the op declares {_attr_type_name(expected)}"
                    )
                continue
            if attr.name in PLUGIN_LOOKUP_ATTRIBUTES:
                default = declared[attr.name].default_value
                want = default.s.decode() if default is not None and default.s else None
                got = attr.s.decode("utf-8", "replace")
                if want is not None and got != want:
                    key = ("lookup", node.op_type, attr.name, got)
                    if key not in seen:
                        seen.add(key)
                        problems.append(
                            f"{DOMAIN}::{node.op_type} node {label}: {attr.name} is {got!r}, the plugin's is {want!r} "
                            "(TensorRT looks the plugin up by it)"
                        )
    others = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node
                     if n.domain not in STANDARD_DOMAINS and n.domain != DOMAIN})
    if others:
        problems.append(f"custom ops of other domains {others[:MAX_LISTED]}: only {DOMAIN} ops have runtimes here")
    return problems, sum(1 for n in scans if n.op_type in schemas)


def check_graph(path, *, allow_no_scan: bool = False, structural: bool = False, what: str = "ONNX file"):
    """Validate ``path`` and return the loaded ModelProto (without external weights).

    ``structural`` also runs the ONNX checker and strict shape inference (seconds on a base model).
    Raises GraphError listing every problem."""
    import onnx

    from .paths import check_input_file

    path = check_input_file(path, what, "create it with `remamber-deploy export`")
    model = _load(path)
    schemas = scan_schemas()
    problems, scan_count = node_problems(model, schemas)
    missing = _external_files(model, path)
    if missing:
        problems.append(f"external data file(s) {missing} are not beside it in {path.parent}; copy them there")
    if scan_count == 0 and not allow_no_scan and not any(n.domain == DOMAIN for n in model.graph.node):
        problems.append(
            f"has no {DOMAIN} scan node ({', '.join(sorted(schemas))}): it is not a ReMamber export, and an engine "
            "built from it would not use the plugin; pass --allow-no-scan if that is what you want"
        )
    if structural and not problems:
        try:
            onnx.checker.check_model(model if not missing else str(path), full_check=False)
        except Exception as exc:
            problems.append(f"onnx.checker: {str(exc).strip().splitlines()[0][:300]}")
        try:
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except Exception as exc:
            problems.append(f"shape inference: {str(exc).strip().splitlines()[0][:300]}")
    if problems:
        count = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        raise GraphError(f"{what} {path} is refused{count}: " + "; ".join(problems))
    return model
