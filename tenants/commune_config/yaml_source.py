"""Read YAML into plain Python data while remembering the line of every key.

PyYAML's own loaders forget positions, silently keep the last of two duplicate keys and
read ``12:00`` as the integer 720 (YAML 1.1 sexagesimal). Operators write times and
"no"/"yes"-like codes all the time, so we compose the node tree and build the data
ourselves: times stay strings, only ``true``/``false`` are booleans, duplicate keys are
errors, and every path gets its line for error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

Path = tuple[str | int, ...]

_TIME_LIKE = re.compile(r"^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$")


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class SourceMap:
    """Line numbers (1-based) of every key path seen in one file."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line_for(self, path: Path) -> int | None:
        # A missing key has no line of its own: point at the closest parent that exists.
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class YamlLoadError(Exception):
    def __init__(self, errors: list[ConfigError]):
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


class _Builder(yaml.constructor.SafeConstructor):
    def __init__(self, filename: str, source_map: SourceMap):
        super().__init__()
        self.filename = filename
        self.source_map = source_map
        self.errors: list[ConfigError] = []

    def build(self, node: yaml.Node, path: Path):
        self.source_map.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            result: dict = {}
            for key_node, value_node in node.value:
                key = self.build_scalar(key_node)
                if not isinstance(key, (str, int)):
                    self.errors.append(ConfigError(
                        self.filename, key_node.start_mark.line + 1, format_path(path),
                        "une clé doit être un texte simple",
                    ))
                    continue
                key = str(key)
                child = (*path, key)
                if key in result:
                    self.errors.append(ConfigError(
                        self.filename, key_node.start_mark.line + 1, format_path(child),
                        f"clé en double (déjà définie ligne {self.source_map.lines[child]})",
                    ))
                    continue
                self.source_map.lines[child] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.source_map.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index)))
            return items
        return self.build_scalar(node)

    def build_scalar(self, node: yaml.Node):
        if not isinstance(node, yaml.ScalarNode):
            return None
        if node.style is None:  # plain scalars only: quoted ones are always text
            if _TIME_LIKE.match(node.value):
                return node.value
            if node.tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
                return node.value
        try:
            return self.construct_object(node, deep=True)
        except ValueError:
            # e.g. 2026-02-30 looks like a date to YAML but is none: keep the text and let
            # the schema say "date invalide" at the right key.
            return node.value


def load_yaml(text: str, filename: str) -> tuple[object, SourceMap]:
    source_map = SourceMap()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise YamlLoadError([ConfigError(filename, line, "", f"YAML invalide : {problem}")]) from exc
    except yaml.YAMLError as exc:
        raise YamlLoadError([ConfigError(filename, None, "", f"YAML invalide : {exc}")]) from exc
    if node is None:
        return {}, source_map
    builder = _Builder(filename, source_map)
    data = builder.build(node, ())
    if builder.errors:
        raise YamlLoadError(builder.errors)
    return data, source_map
