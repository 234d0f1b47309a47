"""Discovery and lazy loading of plugins of every kind (models, data modules, callbacks).

Sources, in order: entry points of installed distributions (groups ``lightplug.models``,
``lightplug.datamodules``, ``lightplug.callbacks``), ``.py`` files in local plugin folders
(``./plugins`` or ``$LIGHTPLUG_PLUGIN_PATH``), and explicit ``package.module:Class`` paths.

Listing reads distribution metadata only; a plugin is imported when it is used. What loading
teaches (schema, task, description, status) is cached per distribution version. A plugin that
fails in any way is reported with its package, entry point and cause, and never stops the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ._cache import PluginCache
from ._dist_info import CORE_DIST, fingerprint, incompatible, requirement_on_core
from .errors import PluginError
from .metric_names import plugin_traits
from .plugin import TASKS, CallbackPlugin, DataPlugin, ModelPlugin
from .schema import Schema, schema_from_dataclass

__all__ = ["KINDS", "PluginRef", "LoadedPlugin", "Registry", "get_registry"]

#: kind -> entry-point group
KINDS = {"model": "lightplug.models", "data": "lightplug.datamodules", "callback": "lightplug.callbacks"}
_BASES: dict[str, type] = {"model": ModelPlugin, "data": DataPlugin, "callback": CallbackPlugin}


@dataclass
class PluginRef:
    """What is known of a plugin without importing it."""

    kind: str
    name: str
    target: str  # "module:attr" or a file path
    source: str  # "entry-point", "local" or "path"
    dist: str | None = None
    version: str | None = None
    summary: str = ""
    requires: str | None = None  # the distribution's requirement on lightplug
    fingerprint: str = ""
    problem: str | None = None  # conflict / incompatible / ignored, known before loading

    @property
    def qualified(self) -> str:
        """``dist:name``, the spelling that picks this plugin when two packages share a name."""
        return f"{self.dist or self.source}:{self.name}"

    @property
    def cache_key(self) -> str:
        return "|".join([self.kind, self.name, self.dist or "", self.version or "", self.target, self.fingerprint])


@dataclass
class LoadedPlugin:
    """A plugin whose code is imported: its class (tier 0 adapted to tier 1), schema and facts."""

    ref: PluginRef
    cls: type
    schema: Schema
    task: str | None
    description: str
    extra: dict[str, Any] = field(default_factory=dict)

    def make_config(self, values: dict[str, Any]) -> Any:
        """The plugin's config object (its ``Config`` dataclass, or a dict for tier 0)."""
        values = {k: v for k, v in values.items() if not k.startswith("_")}
        config_cls = getattr(self.cls, "Config", None)
        return config_cls(**values) if config_cls is not None else dict(values)

    def instantiate(self, values: dict[str, Any]) -> Any:
        """The plugin object, with its config as ``.cfg``."""
        return self.cls(self.make_config(values))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


def _is_torch_module(obj: Any) -> bool:
    return isinstance(obj, type) and any(c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in obj.__mro__)


def _is_lightning_callback(obj: Any) -> bool:
    return isinstance(obj, type) and any(c.__name__ == "Callback" and c.__module__.startswith(("lightning", "pytorch_lightning")) for c in obj.__mro__)


def _adapt(kind: str, obj: Any, where: str, source: str = "entry-point") -> tuple[type, Schema]:
    """Turn what an entry point names into a plugin class of ``kind`` and read its schema (an import path's
    model also gets the ``weights_file`` field)."""
    base = _BASES[kind]
    cls: Any
    if isinstance(obj, type) and issubclass(obj, base):
        cls = obj
        config = getattr(cls, "Config", None)
        schema = schema_from_dataclass(config, where, group=kind) if config is not None else Schema([])
    elif kind == "model" and (_is_torch_module(obj) or (callable(obj) and not isinstance(obj, type))):
        from .callables import model_plugin_class

        cls, schema = model_plugin_class(obj, where, extras=source == "path")
    elif kind == "callback" and _is_lightning_callback(obj):
        from .callables import read_callable

        spec = read_callable(obj, where, group=kind)
        schema = spec.schema
        attrs = {"build": lambda self, cfg: spec.call(cfg), "description": _first_line(obj.__doc__), "__doc__": obj.__doc__}
        cls = type(obj.__name__, (CallbackPlugin,), attrs)
    else:
        want = "a ModelPlugin subclass or an nn.Module class" if kind == "model" else f"a {base.__name__} subclass"
        raise PluginError(f"{where}: expected {want}, got {obj!r}")
    schema.presets = {k: dict(v) for k, v in (cls.presets or {}).items()}
    schema.validate_presets(where)
    task = getattr(cls, "task", None)
    if kind == "model" and task not in TASKS:
        raise PluginError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
    return cls, schema


# ---------------------------------------------------------------- discovery
def _local_dirs() -> list[Path]:
    env = os.environ.get("LIGHTPLUG_PLUGIN_PATH")
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else [Path("plugins")]
    return [d for d in dirs if d.is_dir()]


def _autoload_filter() -> set[str] | None:
    if os.environ.get("LIGHTPLUG_DISABLE_AUTOLOAD", "").lower() in ("1", "true", "yes"):
        return {n.strip() for n in os.environ.get("LIGHTPLUG_PLUGINS", "").split(",") if n.strip()}
    return None


class Registry:
    """Every plugin of every kind, discovered from metadata; loaded on demand."""

    def __init__(self, cache: PluginCache | None = None) -> None:
        self.cache = cache or PluginCache()
        self._refs: dict[str, list[PluginRef]] = {}
        self._loaded: dict[str, LoadedPlugin] = {}

    # ---- discovery
    def refs(self, kind: str, include_ignored: bool = False) -> list[PluginRef]:
        """All plugins of ``kind`` in name order, clashes and incompatible ones included (marked)."""
        if kind not in self._refs:
            self._refs[kind] = self._discover(kind)
        return [r for r in self._refs[kind] if include_ignored or not (r.problem or "").startswith("ignored")]

    def _discover(self, kind: str) -> list[PluginRef]:
        found: list[PluginRef] = []
        seen: set[tuple[str | None, str]] = set()
        for ep in metadata.entry_points(group=KINDS[kind]):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if (dist_name, ep.name) in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add((dist_name, ep.name))
            requires = requirement_on_core(dist) if dist is not None and dist_name != CORE_DIST else None
            ref = PluginRef(kind, ep.name, ep.value, "entry-point", dist_name, dist.version if dist else None,
                            (dist.metadata["Summary"] or "") if dist else "", requires, fingerprint(dist, ep.value))
            why = incompatible(requires)
            ref.problem = f"incompatible: {why}" if why else None
            found.append(ref)
        if kind == "model":
            for folder in _local_dirs():
                for path in sorted(folder.glob("*.py")):
                    if not path.name.startswith("_"):
                        found.append(PluginRef(kind, path.stem, str(path.resolve()), "local", None, None,
                                               f"local file {path}", fingerprint=fingerprint(None, str(path))))
        allowed = _autoload_filter()
        by_name: dict[str, list[PluginRef]] = {}
        for ref in found:
            if allowed is not None and ref.dist != CORE_DIST and ref.name not in allowed:
                ref.problem = "ignored: LIGHTPLUG_DISABLE_AUTOLOAD=1 and not named in LIGHTPLUG_PLUGINS"
            else:
                by_name.setdefault(ref.name, []).append(ref)
        for same in by_name.values():
            if len(same) > 1:
                for ref in same:
                    others = " and ".join(o.qualified.split(":")[0] for o in same)
                    ref.problem = ref.problem or f"conflict: {ref.name!r} is registered by {others}"
        return sorted(found, key=lambda r: (r.name, r.dist or ""))

    def names(self, kind: str) -> list[str]:
        return sorted({r.name for r in self.refs(kind)})

    # ---- lookup
    def find(self, kind: str, name: str, import_paths: bool = True) -> PluginRef:
        """The plugin ``name`` (or ``dist:name``, or ``package.module:Class`` for models) that a user typed.

        A name read from a file (checkpoint, store card, ONNX metadata) goes through :meth:`find_installed`
        instead (see :mod:`lightplug.trust`); ``import_paths=False`` refuses ``package.module:Class`` (the web UI).

        Raises:
            PluginError: unknown name (close matches offered), a clash, or an incompatible plugin.
        """
        refs = self.refs(kind)
        if ":" in name:
            qualifier, _, short = name.partition(":")
            hits = [r for r in refs if r.name == short and _norm(qualifier) in (_norm(r.dist), r.source)]
            if hits:
                return self.usable(hits[0], allow_conflict=True)
            if not import_paths:
                raise PluginError(f"{kind} {name!r}: no installed package {qualifier!r} registers {short!r}",
                                  hint="only installed plugins are accepted here: NAME or DIST:NAME")
            if kind in ("model", "callback") and _importable(qualifier):
                return PluginRef(kind, name, name, "path")
            raise PluginError(f"{kind} {name!r}: no package {qualifier!r} registers {short!r} and no module {qualifier!r} can be imported",
                              hint="use NAME, DIST:NAME or package.module:Class")
        hits = [r for r in refs if r.name == name]
        if not hits:
            close = difflib.get_close_matches(name, self.names(kind), n=3, cutoff=0.5)
            label = "data" if kind == "data" else kind
            hint = f"did you mean {', '.join(close)}?" if close else f"installed: {', '.join(self.names(kind)) or 'none'}"
            cmd = "lightplug data" if kind == "data" else "lightplug models"
            raise PluginError(f"unknown {label} {name!r}: {hint}", hint=f"see `{cmd}`")
        if len(hits) > 1:
            choices = " or ".join(f"{kind if kind != 'callback' else 'callbacks'}={r.qualified}" for r in hits)
            pkgs = " and ".join(r.dist or r.source for r in hits)
            raise PluginError(f"{kind} {name!r} is registered by both {pkgs}", hint=f"pick one with {choices}")
        return self.usable(hits[0])

    def usable(self, ref: PluginRef, allow_conflict: bool = False) -> PluginRef:
        """``ref`` itself, or a PluginError when it is ignored, incompatible or (unless allowed) in a name clash."""
        if ref.problem and not (allow_conflict and ref.problem.startswith("conflict")):
            raise PluginError(f"{ref.kind} {ref.name!r} from {ref.dist or ref.source} ({ref.target}) cannot be used: {ref.problem}")
        return ref

    # ---- loading
    def load(self, ref: PluginRef) -> LoadedPlugin:
        """Import the plugin and read its schema; the result (or failure) is cached for listings.

        Raises:
            PluginError: naming the plugin, its package, entry point and the cause.
        """
        if ref.cache_key in self._loaded:
            return self._loaded[ref.cache_key]
        where = f"{ref.kind} {ref.name!r} ({ref.dist or ref.source}, {ref.target})"
        try:
            obj = self._import(ref)
            cls, schema = _adapt(ref.kind, obj, where, ref.source)
        except PluginError as exc:
            self._remember(ref, "broken", str(exc))
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, even SystemExit
            if isinstance(exc, KeyboardInterrupt):
                raise
            cause = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._remember(ref, "broken", f"import failed: {cause}")
            raise PluginError(f"{where} failed to import: {cause}", hint="fix or uninstall that package") from exc
        description = getattr(cls, "description", None) or _first_line(cls.__doc__) or ref.summary
        loaded = LoadedPlugin(ref, cls, schema, getattr(cls, "task", None), description)
        self._loaded[ref.cache_key] = loaded
        self._remember(ref, "ok", "", loaded)
        return loaded

    def get(self, kind: str, name: str) -> LoadedPlugin:
        """Find and load the plugin ``name`` of ``kind``."""
        return self.load(self.find(kind, name))

    def _import(self, ref: PluginRef) -> Any:
        if ref.source == "local":
            mod_name = f"lightplug_local_{ref.name}"
            spec = importlib.util.spec_from_file_location(mod_name, ref.target)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
            return _pick_local(module, ref)
        module_name, _, attr = ref.target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def _remember(self, ref: PluginRef, status: str, cause: str, loaded: LoadedPlugin | None = None) -> None:
        if ref.source == "path":
            return
        entry: dict[str, Any] = {"status": status, "cause": cause}
        if loaded is not None:
            entry.update(task=loaded.task, description=loaded.description, schema=loaded.schema.to_dict(),
                         has_check=bool(getattr(loaded.cls, "overrides", lambda _: False)("check")), traits=plugin_traits(loaded.cls),
                         has_data_needs=bool(getattr(loaded.cls, "overrides", lambda _: False)("data_needs")))
        self.cache.put(ref.cache_key, entry)

    def cached(self, ref: PluginRef) -> dict[str, Any] | None:
        """What an earlier load of this exact version taught us, if anything."""
        return self.cache.get(ref.cache_key)

    def source_infos(self, refs: list[PluginRef]) -> dict[str, dict[str, Any]]:
        """Task and description of plugins never loaded, read from their source without importing them
        (:mod:`lightplug._source_info`), cached per version like loads; ``ref.cache_key`` -> info."""
        from ._source_info import source_info

        out, new = {}, {}
        for ref in refs:
            key = "source|" + ref.cache_key
            info = self.cache.get(key)
            if info is None and ref.source == "entry-point":
                info = new[key] = source_info(ref.target) or {}
            if info:
                out[ref.cache_key] = info
        if new:
            self.cache.put_many(new)
        return out

    def schema(self, ref: PluginRef) -> tuple[Schema, str | None]:
        """The plugin's schema and task, from the cache when fresh, else by loading it."""
        entry = self.cached(ref)
        if entry and entry.get("status") == "ok" and ref.cache_key not in self._loaded:
            return Schema.from_dict(entry["schema"]), entry.get("task")
        loaded = self.load(ref)
        return loaded.schema, loaded.task


def _norm(name: str | None) -> str:
    return (name or "").lower().replace("_", "-").replace(".", "-")


def _importable(module: str) -> bool:
    if not all(part.isidentifier() for part in module.split(".")):
        return False
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _pick_local(module: Any, ref: PluginRef) -> Any:
    if hasattr(module, "PLUGIN"):
        return module.PLUGIN
    mine = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    plugins = [v for v in mine if issubclass(v, ModelPlugin)] or [v for v in mine if _is_torch_module(v)]
    if len(plugins) != 1:
        found = ", ".join(v.__name__ for v in plugins) or "none"
        raise PluginError(f"local plugin {ref.target}: define exactly one ModelPlugin or nn.Module class, or set PLUGIN = <class> (found: {found})")
    return plugins[0]


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (discovery runs once per process)."""
    return Registry()
