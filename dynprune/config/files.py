"""Parameter files and profiles: what exactly would run is defaults < parameter file < profile < overrides.

    params/<notebook>/<name>.yaml     one experiment (its notebook is the folder's name)
    params/profiles/<profile>.yaml    default: (every experiment), experiments: {<notebook>/<name>: ...}, resources:
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from dynprune.config.checks import _check_key, _short, build, check_name
from dynprune.config.schema import SCHEMAS, Config, ConfigError

PROJECT = Path(__file__).resolve().parent.parent.parent


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """safe_load that refuses duplicate keys: the second one would silently win. On libyaml where PyYAML has
    it: the pure-Python parser takes 14 ms for the quick profile's file, and the report reads it 100 times."""

    def construct_mapping(self, node, deep=False):
        seen = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_short(key)}", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


MAX_BYTES, MAX_VALUES, MAX_DEPTH = 1 << 20, 10_000, 20  # what a parameter file may hold, at the most


def within_bounds(data, where: str):
    """`data`, if it holds at most MAX_VALUES values nested at most MAX_DEPTH deep, counting each use of a YAML
    alias again: nine nested aliases (a "billion laughs") would otherwise expand to 10^9 values in any code
    that walks, prints or hashes them."""
    count, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES or depth > MAX_DEPTH:
            raise ConfigError(f"{where} holds more than {MAX_VALUES} values or nests deeper than {MAX_DEPTH} (YAML "
                              f"aliases expanding?); a parameter file is a short mapping of plain values")
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack += [(v, depth + 1) for _, v in children] + [(k, depth + 1) for k in (value if isinstance(value, dict) else ())]
    return data


def parse_yaml(text: str, where: str):
    """YAML text as plain values: no tags, no duplicate keys, bounded (`within_bounds`)."""
    return within_bounds(yaml.load(text, Loader=_Loader), where)


def read_yaml(path: Path, allow_empty: bool = False) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a parameter file (a .yaml file) in it")
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    with open(path, "rb") as f:  # at most MAX_BYTES + 1 bytes, whatever size the file says it has (/proc)
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES // 1024} KiB; a parameter file is a short mapping")
    try:
        data = parse_yaml(raw.decode(), str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        why = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{at}: {why}") from None
    except ConfigError:
        raise
    except (UnicodeDecodeError, RecursionError, ValueError) as e:  # ValueError: an int of over 4,300 digits
        raise ConfigError(f"{path} cannot be read as a YAML text file ({type(e).__name__})") from None
    if data is None and allow_empty:
        return {}
    if data is None:
        raise ConfigError(f"{path} is empty; it must be a mapping of parameters, e.g. 'epochs: 30'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of parameters, got a {type(data).__name__}")
    return data


def _check_keys(values, where: str, schema=Config) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: must be a mapping of parameters, got {_short(values)}")
    for key in values:
        _check_key(key, f"{where}: ", schema)
    return values


def kind_of(params_file: Path) -> str:
    """The notebook a parameter file belongs to: the name of its folder (params/<notebook>/<name>.yaml)."""
    return Path(params_file).parent.name


def experiment_key(params_file: Path) -> str:
    """'params/dynamic_pruning/mnist_val.yaml' -> 'dynamic_pruning/mnist_val' (the key profiles use)."""
    params_file = Path(params_file)
    return f"{params_file.parent.name}/{params_file.stem}"


def params_file(experiment: str) -> Path:
    """An experiment is a key under params/ ('dynamic_pruning/mnist_val') or a path to a YAML file."""
    return Path(experiment) if experiment.endswith(".yaml") else PROJECT / "params" / f"{experiment}.yaml"


def params_root(params_file: Path | None = None) -> Path:
    """The params/ folder whose profiles apply: the one the file lies in, else this project's."""
    real = Path(os.path.realpath(params_file)) if params_file is not None else None  # a link loop: no error here
    if real is not None and real.parent.parent.name == "params":
        return real.parent.parent
    return PROJECT / "params"


def read_profile(profile: str, root: Path) -> dict:
    check_name(profile, "profile")
    path = Path(root) / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"profile '{profile}' has no file {path}; known profiles: {', '.join(known) or 'none'}")
    data = read_yaml(path, allow_empty=True)
    extra = set(data) - {"default", "experiments", "resources"}
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {sorted(map(str, extra))}; allowed: default, experiments, resources")
    return data


def profile_overrides(params_file: Path, profile: str, schema=Config) -> dict:
    """A profile file has `default:` (every experiment) and `experiments: {kind/name: {...}}`."""
    path = params_root(params_file) / "profiles" / f"{profile}.yaml"
    data = read_profile(profile, path.parent.parent)
    merged = dict(_check_keys(data.get("default") or {}, str(path))) if schema is Config else {}
    specific = data.get("experiments") or {}
    if not isinstance(specific, dict):
        raise ConfigError(f"{path}: experiments must map <notebook>/<name> to parameters, got {_short(specific)}")
    return merged | _check_keys(dict(specific.get(experiment_key(params_file)) or {}),
                                f"{path} [{experiment_key(params_file)}]", schema)


def schema_for(params_file) -> type:
    """params/<notebook>/<name>.yaml is read with the schema of its notebook."""
    return SCHEMAS.get(kind_of(params_file), Config) if params_file is not None else Config


def resolve(params_file=None, profile: str = "paper", overrides: dict | None = None):
    """What exactly would run: defaults < parameter file < profile < overrides."""
    values: dict = {}
    where = ""
    schema = schema_for(params_file)
    if params_file is not None:
        params_file = Path(params_file)
        where = f"{params_file}: "
        values = {"name": params_file.stem} | _check_keys(read_yaml(params_file), str(params_file), schema)
        values |= profile_overrides(params_file, profile, schema)
    values |= _check_keys(dict(overrides or {}), "overrides", schema)
    try:
        return build(values, schema)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def resources(params_file: Path, profile: str) -> dict:
    """What one notebook of this profile asks a cluster for: `resources:` of the profile file, with an
    optional `per_experiment: {kind/name: {...}}` inside it."""
    root = params_root(params_file)
    data = read_profile(profile, root).get("resources") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{root}/profiles/{profile}.yaml: resources must be a mapping, e.g. {{gpus: 1, cpus: 8}}")
    specific = (data.get("per_experiment") or {}).get(experiment_key(params_file)) or {}
    return {k: v for k, v in data.items() if k != "per_experiment"} | dict(specific)


def dumps(cfg) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
