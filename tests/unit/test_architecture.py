"""The shape of the code, checked on its source: dependencies point one way (core <- search_spaces
<- trainables <- results <- tune), nothing in tune/ indexes the run state by key, the run folder's
file names are spelled in one module, and functions stay short enough to read."""

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = ["core", "search_spaces", "trainables", "results", "tune"]  # each may import only those before it
LONGEST_FUNCTION = 70  # lines
ARGUMENT_PARSERS = {("tune/search.py", "parse_args")}  # a flag per add_argument: long by nature
# Every file name of the run folder's layout, as code would spell it to build a path: a string (or
# the start of an f-string) that is the name, not prose that mentions it
LAYOUT_NAMES = re.compile(r"(run|record|protocol|micro_batches|record_at_checkpoint|checkpoint_manager_snapshot)"
                          r"\.json|split\.parquet|model\.joblib|trainable\.safetensors|training_state\.pt|"
                          r"optuna\.journal|mlflow\.db|(tokens|embeddings)-")


def sources(package: str):
    return sorted((ROOT / package).glob("*.py"))


def imported_packages(path: Path) -> set[str]:
    """The first-party packages a module imports, at its top or inside its functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_dependencies_point_down(package):
    allowed = set(LAYERS[:LAYERS.index(package) + 1])
    upward = {str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed) for path in sources(package)}
    assert {module: up for module, up in upward.items() if up} == {}


def test_nothing_in_tune_indexes_the_run_state_by_key():
    pattern = re.compile(r"""\b(state|base)\[["']""")
    found = [f"{path.name}:{n}" for path in sources("tune")
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def path_strings(path: Path):
    """(line, text) of every string in a module that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_the_run_folders_file_names_are_spelled_only_in_core_run_folder():
    found = [f"{path.relative_to(ROOT)}:{line} {text!r}" for package in LAYERS for path in sources(package)
             if path.relative_to(ROOT) != Path("core/run_folder.py")
             for line, text in path_strings(path) if LAYOUT_NAMES.match(text)]
    assert found == []


def test_no_function_is_longer_than_a_screen():
    long = []
    for package in LAYERS:
        for path in sources(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST_FUNCTION and (str(path.relative_to(ROOT)), node.name) not in ARGUMENT_PARSERS:
                        long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert long == []
