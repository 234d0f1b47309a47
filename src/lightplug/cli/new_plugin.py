"""``lightplug new-plugin NAME [--dir DIR] [--task classification|regression] [--kind model|data] [--layout table|folder]``:
write a ready-to-install plugin package.

The package (hatchling, src layout) holds a tier-1 ``ModelPlugin`` with a typed ``Config``, presets, a
README and tests that use :mod:`lightplug.testing`; with ``--kind data``, a ``DataPlugin`` (its config inherits
:class:`lightplug.LoaderConfig`) over an in-memory table (``--layout table``) or a folder of sample files, one
sub-folder per class (``--layout folder``). The files come from the text templates shipped in
``lightplug/templates/plugin``; ``{key}`` placeholders are replaced, any other brace is left alone.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

from ..errors import PluginError
from ._args import ArgumentParser

__all__ = ["main", "render_package", "validate_name", "next_steps", "TASKS", "LAYOUTS"]

#: The tasks a new plugin can start from, with what their templates need.
TASKS: dict[str, dict[str, str]] = {
    "classification": {"template": "model_classification.py.tmpl", "data": "digits", "data_arg": "", "test_data": "synthetic",
                       "data_note": "scikit-learn's 8x8 handwritten digits, bundled", "monitor": "val/acc",
                       "bound": "`in_channels`, `num_classes`", "example_field": "width", "example_value": "48"},
    "regression": {"template": "model_regression.py.tmpl", "data": "diabetes", "data_arg": " data=diabetes", "test_data": "diabetes",
                   "data_note": "scikit-learn's diabetes data, 10 features, bundled", "monitor": "val/mse",
                   "bound": "`in_features`, `num_outputs`", "example_field": "hidden", "example_value": "96"},
}
#: The data plugins a new package can start from (``--kind data --layout ...``).
LAYOUTS: dict[str, dict[str, str]] = {
    "table": {"template": "data_table.py.tmpl", "test": "data_test_table.py.tmpl", "what": "an in-memory table (scikit-learn's wine as the example)",
              "example_step": "", "root_arg": "", "root_value": ""},
    "folder": {"template": "data_folder.py.tmpl", "test": "data_test_folder.py.tmpl",
               "what": "a folder of .npy sample files, one sub-folder per class", "example_step": "python -m {module} example        # an example folder: digits as .npy files\n",
               "root_arg": " data.root=example", "root_value": " root=example"},
}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def validate_name(name: str) -> None:
    """Refuse a plugin name that is not a lower-case Python identifier.

    Raises:
        PluginError: naming the rule and a corrected name.
    """
    if _NAME.fullmatch(name) and not keyword.iskeyword(name):
        return
    fixed = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    fixed = f"my_{fixed}" if not fixed or not fixed[0].isalpha() or keyword.iskeyword(fixed) else fixed
    raise PluginError(f"invalid plugin name {name!r}: use a lower-case Python identifier (letters, digits, _; starting with a letter)",
                      hint=f"e.g. lightplug new-plugin {fixed}")


def _render(text: str, values: dict[str, str]) -> str:
    """Replace ``{key}`` for the known keys only, so dicts and f-strings in the templates stay as they are."""
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], text)


def _template(name: str) -> str:
    return (resources.files("lightplug") / "templates" / "plugin" / name).read_text(encoding="utf-8")


def render_package(name: str, task: str = "classification", kind: str = "model", layout: str = "table") -> dict[str, str]:
    """The files of a new plugin package, as relative path -> text.

    Example:
        >>> sorted(render_package("my_model"))  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'pyproject.toml', 'src/lightplug_my_model/__init__.py', 'src/lightplug_my_model/model.py', 'tests/test_my_model.py']
        >>> sorted(render_package("my_data", kind="data"))  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'pyproject.toml', 'src/lightplug_my_data/__init__.py', 'src/lightplug_my_data/data.py', 'tests/test_my_data.py']
    """
    from .. import __version__

    validate_name(name)
    module = f"lightplug_{name}"
    class_name = "".join(part.capitalize() for part in name.split("_") if part)
    common = {"name": name, "class_name": class_name, "module": module, "dist": f"lightplug-{name.replace('_', '-')}",
              "core_version": ".".join(__version__.split(".")[:2])}
    if kind == "data":
        return _render_data(common, layout)
    spec = TASKS[task]
    kind_word = "convolutional classifier" if task == "classification" else "multi-layer perceptron regressor"
    values = {
        **{k: v for k, v in spec.items() if k != "template"}, **common,
        "task": task,
        "description": f"{class_name}: a {kind_word} as a lightplug model plugin ({name}).",
        "kind": "model", "entry_group": "lightplug.models", "entry_use": f"lightplug train model={name}", "submodule": "model",
        "dependencies": '"torch>=2.4"',
    }
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"src/{module}/__init__.py": "__init__.py.tmpl",
        f"src/{module}/model.py": spec["template"],
        f"tests/test_{name}.py": "test_plugin.py.tmpl",
    }
    return {path: _render(_template(tmpl), values) for path, tmpl in files.items()}


def _render_data(common: dict[str, str], layout: str) -> dict[str, str]:
    """The files of a data plugin package (``--kind data``)."""
    spec, name, module = LAYOUTS[layout], common["name"], common["module"]
    values = {
        **common, "task": "classification", "test_model": "mlp", "monitor": "val/acc",
        "description": f"{common['class_name']}: {spec['what']} as a lightplug data plugin ({name}).",
        "kind": "data", "entry_group": "lightplug.datamodules", "entry_use": f"lightplug train model=mlp data={name}", "submodule": "data",
        "dependencies": '"numpy>=1.24", "scikit-learn>=1.3"', "facts": "`in_features`, `num_classes`, `label_names`",
        "example_step": spec["example_step"].replace("{module}", module), "root_arg": spec["root_arg"], "root_value": spec["root_value"],
    }
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "data_README.md.tmpl",
        f"src/{module}/__init__.py": "__init__.py.tmpl",
        f"src/{module}/data.py": spec["template"],
        f"tests/test_{name}.py": spec["test"],
    }
    if layout == "folder":
        files[f"src/{module}/__main__.py"] = "data_main.py.tmpl"
    return {path: _render(_template(tmpl), values) for path, tmpl in files.items()}


def _clash_note(name: str, kind: str = "model") -> str | None:
    """A note when an installed package already registers ``name`` (reads metadata only)."""
    from ..registry import get_registry

    owners = [r.dist or r.target for r in get_registry().refs(kind) if r.name == name]
    if owners:
        return (f"note: {', '.join(owners)} already registers a {kind} plugin named {name!r}; with both installed, users pick one with "
                f"{kind}=DIST:{name}")
    return None


def main(argv: list[str]) -> int:
    """Run ``lightplug new-plugin``; returns the exit code."""
    parser = ArgumentParser(prog="lightplug new-plugin", description="Write a ready-to-install lightplug plugin package (a model, or with --kind data a data set).")
    parser.add_argument("name", help="the plugin's name: a lower-case Python identifier, e.g. my_model")
    parser.add_argument("--dir", help="where to write it (default: ./lightplug-NAME); must not exist or be empty")
    parser.add_argument("--task", choices=sorted(TASKS), default=None, help="what the model predicts (default: classification)")
    parser.add_argument("--kind", choices=["model", "data"], default="model", help="a model plugin (default) or a data plugin")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None,
                        help="data plugins: an in-memory table (default) or a folder of sample files, one sub-folder per class")
    args = parser.parse_args(argv)
    if args.layout and args.kind != "data":
        raise PluginError("--layout is for data plugins", hint=f"lightplug new-plugin {args.name} --kind data --layout {args.layout}")
    if args.task and args.kind == "data":  # the data templates are classification tables and folders; say so, not write one silently
        raise PluginError("--task is for model plugins: a data plugin's task comes from its facts (the templates write classification data)",
                          hint=f"lightplug new-plugin {args.name} --kind data, then change its facts and targets (docs/writing-plugins.md#data-plugins)")
    args.task = args.task or "classification"
    layout = args.layout or "table"
    validate_name(args.name)
    dest = Path(args.dir or f"lightplug-{args.name}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PluginError(f"{dest} already exists and is not an empty folder; nothing was written", hint="choose another --dir, or remove it first")
    files = render_package(args.name, args.task, args.kind, layout)
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    what = f"the data plugin {args.name!r} ({LAYOUTS[layout]['what']})" if args.kind == "data" else f"the {args.task} model plugin {args.name!r}"
    print(f"wrote {dest}/, a pip package with {what}:")
    for rel in files:
        print(f"  {rel}")
    note = _clash_note(args.name, args.kind)
    if note:
        print(note)
    print("next:")
    for step in next_steps(args.name, args.task, dest, args.kind, layout):
        print(f"  {step}")
    return 0


def next_steps(name: str, task: str, dest: Path, kind: str = "model", layout: str = "table") -> list[str]:
    """What to type after ``new-plugin``: the same steps as the package's README (``[test]`` adds pytest)."""
    import shlex

    install, tests = f"pip install -e {shlex.quote(f'{dest}[test]')}", f"python -m pytest {shlex.quote(str(dest / 'tests'))}"
    if kind == "data":
        example = [f"python -m lightplug_{name} example"] if layout == "folder" else []
        spec = LAYOUTS[layout]
        return [install, *example, f"lightplug check-plugin {name} --kind data{spec['root_value']}",
                f"lightplug train model=mlp data={name}{spec['root_arg']}", tests]
    return [install, f"lightplug check-plugin {name}", f"lightplug train model={name}{TASKS[task]['data_arg']} +preset=easy", tests]
