"""Import a checkout's flat-named modules without leaking them into the user's process.

The original is a folder of top-level modules (`utils`, `module`, `model_utils`, ...) meant to run as a
script from its own directory. Imported naively, they would claim `sys.modules["utils"]` and friends for
the rest of the process, and two checkouts could not coexist. So the import happens in a *window*:
`sys.path`, `sys.modules` and `sys.meta_path` are snapshotted, same-named entries are set aside, the
checkout's code folder goes first on `sys.path`, the modules are imported and captured, and everything
is put back exactly as it was. Genuine third-party packages the original pulled in (omegaconf, scipy...)
stay loaded like any import would leave them; the checkout's own names and the shims do not.

The captured module objects keep working because their globals hold everything they imported at the
top. Imports *inside* functions would look names up again at call time, so they are detected; when any
exist, calls into the original go through `Isolated.running()`, which reopens the window with the
captured objects.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import sys
import traceback
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from percepiano_parity.original_adapter.errors import OriginalLoadError, describe_exception, one_line
from percepiano_parity.original_adapter.shims import Shim, ShimFinder, failing

# Distribution names where they differ from the import name, for "install X" hints.
_PIP_NAMES = {"yaml": "PyYAML", "sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow"}
_MISSING = object()


def top_level_names(code_dir: Path) -> frozenset[str]:
    """Names the checkout would claim at top level: its .py files and its package folders."""
    names = {p.stem for p in code_dir.glob("*.py")}
    names |= {p.name for p in code_dir.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return frozenset(names)


def _top(name: str) -> str:
    return name.partition(".")[0]


def _inside(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(folder)
    except OSError:
        return False


@dataclass
class Isolated:
    """Module objects captured from one checkout, with what was needed to import them."""

    code_dir: Path
    modules: dict[str, types.ModuleType]  # the checkout's modules by import name (flat and package ones)
    shim_modules: dict[str, types.ModuleType] = field(default_factory=dict)
    shims: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}, in the order served
    lazy_imports: tuple[str, ...] = ()  # "file:line: statement" for imports inside functions

    def __getitem__(self, name: str) -> types.ModuleType:
        try:
            return self.modules[name]
        except KeyError:
            raise OriginalLoadError(f"the original's module {name!r} was not imported") from None

    @property
    def files(self) -> dict[str, str]:
        """Import name -> the file it was loaded from (proof of what ran)."""
        return {name: str(getattr(mod, "__file__", "") or "") for name, mod in sorted(self.modules.items())}

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Reopen the window: the captured modules and shims under their names, the code folder on sys.path."""
        owned = top_level_names(self.code_dir) | {_top(n) for n in self.modules}
        with _window(self.code_dir, owned, {**self.shim_modules, **self.modules}, set(self.shim_modules)):
            yield

    def running(self) -> contextlib.AbstractContextManager[None]:
        """Context for calling into the original: a no-op unless its code imports at call time."""
        return self.activated() if self.lazy_imports else contextlib.nullcontext()


@contextlib.contextmanager
def _window(
    code_dir: Path,
    owned: frozenset[str] | set[str],
    preload: Mapping[str, types.ModuleType],
    shim_names: set[str],
    finder: ShimFinder | None = None,
) -> Iterator[None]:
    """Temporarily give the checkout's names to the checkout; restore sys.path/modules/meta_path after."""
    saved_modules = dict(sys.modules)
    saved_path = list(sys.path)
    saved_meta = list(sys.meta_path)
    parents = {name: _parent_attr(name) for name in shim_names | set(finder.names if finder else ())}
    for key in list(sys.modules):
        if _top(key) in owned:
            del sys.modules[key]
    sys.modules.update(preload)
    sys.path.insert(0, str(code_dir))
    if finder is not None:
        sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.meta_path[:] = saved_meta
        sys.path[:] = saved_path
        leaving = shim_names | set(finder.names if finder else ())
        for key in list(sys.modules):
            if key not in saved_modules and (_top(key) in owned or key in leaving):
                del sys.modules[key]
        for key, module in saved_modules.items():
            if sys.modules.get(key) is not module:
                sys.modules[key] = module
        for name, previous in parents.items():
            _restore_parent_attr(name, previous)


def _parent_attr(name: str) -> object:
    parent, _, child = name.rpartition(".")
    module = sys.modules.get(parent) if parent else None
    return vars(module).get(child, _MISSING) if module is not None else _MISSING


def _restore_parent_attr(name: str, previous: object) -> None:
    """The import system sets `numpy.lib.arraysetops` as an attribute of numpy.lib: take it back."""
    parent, _, child = name.rpartition(".")
    module = sys.modules.get(parent) if parent else None
    if module is None:
        return
    if previous is _MISSING:
        if child in vars(module):
            delattr(module, child)
    elif getattr(module, child, _MISSING) is not previous:
        setattr(module, child, previous)


def import_isolated(
    code_dir: Path,
    names: Sequence[str],
    shims: Iterable[Shim] = (),
    base: Isolated | None = None,
) -> Isolated:
    """Import `names` from the checkout's code folder inside a window and capture the module objects.

    With `base`, its captured modules and shims are put in place first, so newly imported modules bind
    to the same objects (one coherent original); the result contains both.
    """
    code_dir = code_dir.resolve()
    owned = top_level_names(code_dir)
    preload: dict[str, types.ModuleType] = {}
    shim_names: set[str] = set()
    if base is not None:
        preload = {**base.shim_modules, **base.modules}
        shim_names = set(base.shim_modules)
        owned |= {_top(n) for n in base.modules}
    finder = ShimFinder([(s, e) for s, e in failing(s for s in shims if s.name not in shim_names)])
    captured: dict[str, types.ModuleType] = {}
    served: dict[str, types.ModuleType] = {}
    with _window(code_dir, owned, preload, shim_names, finder):
        for name in names:
            _import_one(name, code_dir, owned)
        for key, module in sys.modules.items():
            if _top(key) in owned and (key in preload or _inside(getattr(module, "__file__", None), code_dir)):
                captured[key] = module
        served = {n: sys.modules[n] for n in finder.served if n in sys.modules}
    result = Isolated(
        code_dir=code_dir,
        modules=captured,
        shim_modules={**(base.shim_modules if base else {}), **served},
        shims=[*(base.shims if base else []), *finder.served.values()],
    )
    result.lazy_imports = tuple(find_lazy_imports(result.modules, code_dir, owned | set(result.shim_modules)))
    return result


def _import_one(name: str, code_dir: Path, owned: frozenset[str] | set[str]) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        where = _culprit(exc, code_dir)
        if _top(missing) in owned:
            raise OriginalLoadError(f"the original's {where} imports {missing!r}, which the checkout lacks") from exc
        package = _PIP_NAMES.get(_top(missing), _top(missing))
        raise OriginalLoadError(
            f"cannot import the original's {name}: {where} needs the package {missing!r}, which is not "
            f"installed here (install {package})"
        ) from exc
    except ImportError as exc:
        raise OriginalLoadError(
            f"cannot import the original's {name}: {_culprit(exc, code_dir)} failed: {describe_exception(exc)}"
        ) from exc
    except Exception as exc:  # the original's module-level code raised
        raise OriginalLoadError(
            f"cannot import the original's {name}: {_culprit(exc, code_dir)} raised {describe_exception(exc)}"
        ) from exc


def _culprit(exc: BaseException, code_dir: Path) -> str:
    """`relative/file.py:line` of the deepest frame inside the checkout, for the error message."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _inside(f.filename, code_dir)]
    if isinstance(exc, SyntaxError) and _inside(exc.filename, code_dir):
        return f"{Path(exc.filename).resolve().relative_to(code_dir)}:{exc.lineno}"
    if not frames:
        return "module"
    last = frames[-1]
    return f"{Path(last.filename).resolve().relative_to(code_dir)}:{last.lineno}"


def find_lazy_imports(
    modules: Mapping[str, types.ModuleType], code_dir: Path, isolated_names: Iterable[str]
) -> list[str]:
    """Imports inside function bodies that resolve through sys.modules at call time to a name the
    isolation handles (the checkout's own names, relative imports, shims)."""
    tops = {_top(n) for n in isolated_names}
    found: list[str] = []
    for module in modules.values():
        path = getattr(module, "__file__", None)
        if not _inside(path, code_dir):
            continue
        try:
            tree = ast.parse(Path(path).read_text(errors="replace"))
        except (OSError, SyntaxError):
            continue
        rel = Path(path).resolve().relative_to(code_dir)
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = ["." if node.level else (node.module or "")]
                else:
                    continue
                if any(t == "." or _top(t) in tops for t in targets):
                    found.append(f"{rel}:{node.lineno}: {one_line(ast.unparse(node))}")
    return sorted(set(found))
