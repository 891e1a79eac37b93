"""Reading the paper's released checkpoints without running their code.

Two formats (P Table 1; ``resources.yaml``):

EDM network pickles (``edm-ffhq-64x64-uncond-ve.pkl``, ``edm-afhqv2-64x64-uncond-ve.pkl``,
``edm-imagenet-64x64-cond-adm.pkl``)
    Plain Python pickles of ``{"ema": <network>, "loss_fn": …, "augment_pipe": …,
    "dataset_kwargs": {...}}`` written by NVlabs' training loop. Every network
    class is wrapped by ``torch_utils.persistence``: an instance pickles as
    ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
    ``meta = {type: "class", version, module_src, class_name, state}``, where
    ``module_src`` is the *source code* of the defining module (NVlabs' loader
    executes it) and ``state`` the instance ``__dict__`` (``_parameters``,
    ``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs``, …). Tensors are
    ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` calls on
    storages that are themselves small legacy ``torch.save`` blobs
    (``torch.storage._load_from_bytes``).

    :class:`RestrictedUnpickler` reads them with an explicit allow-list of
    globals: tensor / parameter rebuild functions, ``collections.OrderedDict``,
    numeric numpy scalars and dtypes, a few inert container names, and *stubs*
    for ``_reconstruct_persistent_obj`` and the plain ``torch.nn`` containers.
    The stubs only record class names and state; the embedded source is never
    compiled or executed (only its sha256 is kept), and any other global
    (``os.system``, ``builtins.eval``, …) stops the load with
    :class:`UnsafePickleError` naming the file. Storage blobs are read with
    ``torch.load(weights_only=True)``.

    Data, not only code, is checked (any failure is a :class:`CheckpointError`
    or :class:`UnsafePickleError` naming the file, never a bare MemoryError or
    RecursionError):

    * before anything is built, :func:`scan_pickle_structure` follows the
      opcodes without executing them and refuses reference cycles, nesting
      deeper than ``MAX_PICKLE_DEPTH`` and structures whose fully expanded size
      (shared references counted at every place they are used) exceeds
      ``MAX_PICKLE_NODES``: a 1 KB pickle of shared references would otherwise
      make every later walk over it (hashing a key, flattening kwargs, the
      module tree) run without end;
    * every tensor is a view checked against its storage (offset, sizes and
      strides within the elements the storage holds, no backward hooks, no
      extra state); torch would otherwise *grow* a legacy storage blob to fit
      and hand back uninitialised memory;
    * classes (``torch.Tensor``, ``torch.nn.Parameter``, ``numpy.ndarray``) are
      resolved to inert tokens that only the rebuild functions accept, so a
      pickle cannot call ``torch.Tensor(n)`` / ``numpy.ndarray(shape)``
      (uninitialised memory) or set a tensor's storage through
      ``Tensor.__setstate__``; numpy arrays are rebuilt only the way numpy
      pickles them (empty, then filled from bytes of the file).

    The module tree is flattened into a ``state_dict`` (parameters and
    persistent buffers, like ``torch.nn.Module.state_dict``) and rebuilt as
    deepinv's port of the same network (deepinv 0.5: ``deepinv.models.NCSNpp``
    is EDM's ``SongUNet``, ``deepinv.models.ADMUNet`` its ``DhariwalUNet``, same
    module names and parameter shapes), with one correction: EDM's GroupNorm
    uses ``min(32, C // 4)`` groups, deepinv's always 32 (identical for every
    layer of the released networks, whose widths are ≥ 128, different for
    narrow test networks), so the group counts are set to EDM's rule. The
    preconditioning (EDM's ``EDMPrecond`` / ``VEPrecond``) is
    :class:`EDMDenoiser`, computed in the network's dtype.

score_sde checkpoints (``checkpoint_48.pth`` of ``ve/ffhq_256_ncsnpp_continuous``)
    ``torch.save({"model": DataParallel state_dict ("module." prefixes),
    "ema": {"decay", "num_updates", "shadow_params"}, "optimizer": …, "step"})``,
    read with ``torch.load(weights_only=True)``. ``shadow_params`` is aligned
    with the model's *trainable* parameters (``requires_grad``) in registration
    order — every parameter except the frozen Fourier-feature weights
    ``all_modules.0.W``, which keep the model's value — exactly what score_sde's
    ``ExponentialMovingAverage.copy_to`` does before evaluation. The network is
    :class:`~prior_landscape.priors.ncsnpp_scoresde.ScoreSDENCSNpp`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prior_landscape.priors.ncsnpp_scoresde import FFHQ256_NCSNPP_CONTINUOUS, ScoreSDENCSNpp, ScoreSDENCSNppConfig

__all__ = [
    "CheckpointError",
    "UnsafePickleError",
    "PersistentObject",
    "PlainModule",
    "RestrictedUnpickler",
    "read_edm_pickle",
    "module_state_dict",
    "EDMNetworkSpec",
    "edm_network_spec",
    "build_edm_network",
    "EDMDenoiser",
    "load_edm_pickle",
    "read_score_sde_checkpoint",
    "load_score_sde_checkpoint",
    "edm_group_norms",
]


class CheckpointError(ValueError):
    """A checkpoint is malformed, incomplete or of an unsupported configuration."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle references a global outside the allow-list (it could execute code)."""


# ============================================================ structure scan
#: Largest fully expanded size of a pickle's object graph (a shared reference counts at
#: every place it is used). A released EDM network expands to ~10⁵ nodes.
MAX_PICKLE_NODES = 5_000_000
#: Deepest nesting of containers and calls. EDM networks nest ~30 levels.
MAX_PICKLE_DEPTH = 400

_MUTATING_OPS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def scan_pickle_structure(
    fh, where: str, *, max_nodes: int = MAX_PICKLE_NODES, max_depth: int = MAX_PICKLE_DEPTH
) -> dict:
    """Follow one pickle's opcodes from ``fh`` without executing any; refuse structure bombs.

    Each object the pickle would build becomes a node whose children are the
    objects it is made of (container items, a call's function and arguments, a
    BUILD's state); memo references (GET) point at the same node, so the graph
    is exactly the object graph the unpickler would create. The pickle is
    refused (:class:`CheckpointError` naming ``where``) when that graph has a
    cycle, nests deeper than ``max_depth``, or expands (shared references
    unfolded, as a recursive walk, a hash of a nested key or a printout would
    unfold them) to more than ``max_nodes`` nodes; also when the opcode stream
    is malformed or truncated. Returns ``{"nodes", "expanded", "depth"}``.
    Leaves ``fh`` just after the pickle's STOP.
    """
    import pickletools

    children: list[list[int]] = []
    MARK = -1

    def node(kids=()) -> int:
        children.append(list(kids))
        return len(children) - 1

    stack: list[int] = []
    memo: dict[int, int] = {}
    root = None

    def pop_to_mark() -> list[int]:
        try:
            i = len(stack) - 1 - stack[::-1].index(MARK)
        except ValueError:
            raise CheckpointError(f"{where}: malformed pickle (no MARK on the stack)") from None
        items = stack[i + 1 :]
        del stack[i:]
        return items

    def pop(n: int) -> list[int]:
        if n > len(stack) or MARK in stack[len(stack) - n :]:
            raise CheckpointError(f"{where}: malformed pickle (stack underflow)")
        items = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return items

    try:
        for op, arg, _pos in pickletools.genops(fh):
            name = op.name
            if name in _PUT_OPS or name == "MEMOIZE":
                if not stack or stack[-1] == MARK:
                    raise CheckpointError(f"{where}: malformed pickle (memoising an empty stack)")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            elif name in _GET_OPS:
                if arg not in memo:
                    raise CheckpointError(f"{where}: malformed pickle (memo entry {arg} read before it is set)")
                stack.append(memo[arg])
            elif name == "DUP":
                stack.append(pop(1)[0])
                stack.append(stack[-1])
            elif name == "MARK":
                stack.append(MARK)
            elif name == "POP":
                if stack and stack[-1] == MARK:
                    pop_to_mark()
                else:
                    pop(1)
            elif name == "POP_MARK":
                pop_to_mark()
            elif name == "STOP":
                root = pop(1)[0]
                break
            else:
                before = op.stack_before
                if pickletools.markobject in before:
                    sliced = pop_to_mark()
                    fixed = pop(before.index(pickletools.markobject))
                else:
                    sliced, fixed = [], pop(len(before))
                if name in _MUTATING_OPS:  # the container itself, grown by the other operands
                    children[fixed[0]].extend(fixed[1:] + sliced)
                    stack.append(fixed[0])
                else:
                    for _ in op.stack_after:  # one new object (PROTO, FRAME: none)
                        stack.append(node(fixed + sliced))
    except ValueError as err:  # pickletools: unknown opcode, truncated argument, no STOP
        raise CheckpointError(f"{where}: malformed or truncated pickle ({err})") from None
    if root is None:
        raise CheckpointError(f"{where}: truncated pickle (no STOP opcode)")

    # expanded size and depth of every node reachable from the root (iterative post-order)
    expanded = [0] * len(children)
    depth = [0] * len(children)
    state = [0] * len(children)  # 0 unseen, 1 on the path, 2 done
    todo = [(root, False)]
    while todo:
        n, leaving = todo.pop()
        if leaving:
            kids = children[n]
            expanded[n] = min(max_nodes + 1, 1 + sum(expanded[k] for k in kids))
            depth[n] = 1 + max((depth[k] for k in kids), default=0)
            state[n] = 2
            if expanded[n] > max_nodes:
                raise CheckpointError(
                    f"{where}: the pickle's structure expands to more than {max_nodes:,} objects through shared "
                    "references (a structure bomb); a network checkpoint never does. The file is crafted or corrupted."
                )
            if depth[n] > max_depth:
                raise CheckpointError(
                    f"{where}: the pickle nests deeper than {max_depth} levels; the file is crafted or corrupted"
                )
            continue
        if state[n] == 2:
            continue
        if state[n] == 1:
            raise CheckpointError(
                f"{where}: the pickle's objects form a reference cycle; a network checkpoint has "
                "none. The file is crafted or corrupted."
            )
        state[n] = 1
        todo.append((n, True))
        for k in children[n]:
            if state[k] == 1:
                raise CheckpointError(
                    f"{where}: the pickle's objects form a reference cycle; a network checkpoint "
                    "has none. The file is crafted or corrupted."
                )
            if state[k] == 0:
                todo.append((k, False))
    return {"nodes": len(children), "expanded": expanded[root], "depth": depth[root]}


# ============================================================ restricted unpickler
class PersistentObject:
    """Stand-in for an object pickled by NVlabs' ``torch_utils.persistence``.

    Holds the recorded ``class_name``, the ``state`` (instance ``__dict__``) and
    the sha256 and length of the embedded module source, which is never executed.
    """

    __slots__ = ("class_name", "version", "state", "module_src_sha256", "module_src_len")

    def __init__(self, class_name: str, version: Any, state: dict, module_src: str):
        self.class_name = class_name
        self.version = version
        self.state = state
        self.module_src_sha256 = hashlib.sha256(module_src.encode("utf-8", "surrogatepass")).hexdigest()
        self.module_src_len = len(module_src)

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


class PlainModule:
    """Stand-in for a plain ``torch.nn`` module in a pickle (``ModuleDict`` …): records its state only."""

    torch_class = "torch.nn.Module"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.torch_class}: unexpected state of type {type(state).__name__}")
        self.state = state

    @property
    def class_name(self) -> str:
        return self.torch_class

    def __repr__(self) -> str:
        return f"PlainModule({self.torch_class!r})"


_PLAIN_TORCH_MODULES = {
    "torch.nn.modules.container": ("ModuleDict", "ModuleList", "Sequential"),
    "torch.nn.modules.linear": ("Linear", "Identity"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.normalization": ("GroupNorm",),
    "torch.nn.modules.activation": ("SiLU",),
    "torch.nn.modules.dropout": ("Dropout",),
}
_PLAIN_STUBS: dict[tuple[str, str], type] = {}
for _mod, _names in _PLAIN_TORCH_MODULES.items():
    for _name in _names:
        _PLAIN_STUBS[(_mod, _name)] = type(f"Plain{_name}", (PlainModule,), {"torch_class": f"{_mod}.{_name}"})


class _EasyDict(dict):
    """Inert replacement for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("persistent object: metadata is not a dict")
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"persistent object of unsupported type {_short_repr(meta.get('type'))}")
    class_name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(src, str):
        raise pickle.UnpicklingError("persistent object: class_name / module_src missing")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {class_name}: state is not a dict")
    return PersistentObject(class_name, meta.get("version"), state, src)


class _ClassToken:
    """What a pickle gets for an allow-listed class: a name, not the class.

    ``torch.Tensor``, ``torch.nn.Parameter`` and ``numpy.ndarray`` appear in
    EDM pickles only as arguments of rebuild functions (``_rebuild_from_type_v2``,
    numpy's ``_reconstruct``), which map the token back to the class. Handing
    out the class itself would let a pickle call it (``torch.Tensor(n)``,
    ``numpy.ndarray(shape)``: uninitialised memory) or instantiate it and set its
    storage unchecked (``Tensor.__setstate__`` with a legacy 4-tuple).
    """

    __slots__ = ("cls",)

    def __init__(self, cls):
        self.cls = cls

    def __repr__(self) -> str:
        return f"<class token {self.cls.__module__}.{self.cls.__qualname__}>"


_TENSOR_TYPES = {torch.Tensor, torch.nn.Parameter}
_MAX_TENSOR_DIMS = 32


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_view(storage, storage_offset, size, stride) -> None:
    """A tensor view (offset, sizes, strides) must lie within the elements its storage holds."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor data is a {type(storage).__name__}, not a tensor storage")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise pickle.UnpicklingError("tensor size and stride must be sequences")
    if len(size) != len(stride) or len(size) > _MAX_TENSOR_DIMS:
        raise pickle.UnpicklingError(f"tensor with {len(size)} sizes and {len(stride)} strides")
    if not _is_int(storage_offset) or not all(_is_int(v) and v >= 0 for v in (*size, *stride)):
        raise pickle.UnpicklingError(
            f"tensor offset, sizes and strides must be non-negative integers (offset {storage_offset!r}, "
            f"size {tuple(size)!r}, stride {tuple(stride)!r})"
        )
    held = storage.size()  # elements
    if storage_offset < 0 or storage_offset > held:
        raise pickle.UnpicklingError(f"tensor offset {storage_offset} lies outside its storage of {held} elements")
    if all(size):  # a non-empty view: its last element must be in the storage
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= held:
            raise pickle.UnpicklingError(
                f"tensor view of size {tuple(size)}, stride {tuple(stride)} at offset {storage_offset} reaches "
                f"element {last} of a storage holding {held}: the tensor points past its data"
            )


def _no_hooks(backward_hooks) -> None:
    # torch pickles an empty OrderedDict here (hooks are never serialised, see torch's Note
    # [Don't serialize hooks]); anything else would attach allow-listed callables as hooks
    if backward_hooks is not None and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise pickle.UnpicklingError("tensor with backward hooks refused")


def _rebuild_tensor(storage, storage_offset, size, stride):
    _check_view(storage, storage_offset, size, stride)
    held = storage._untyped_storage.nbytes()
    t = torch._utils._rebuild_tensor(storage, storage_offset, tuple(size), tuple(stride))
    if t.untyped_storage().nbytes() != held:  # never grow a storage (would expose uninitialised memory)
        raise pickle.UnpicklingError("tensor storage was resized while rebuilding a tensor")
    return t


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _no_hooks(backward_hooks)
    if not isinstance(requires_grad, bool):
        raise pickle.UnpicklingError(f"tensor requires_grad is a {type(requires_grad).__name__}")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, bool) for v in metadata.values())
    ):
        raise pickle.UnpicklingError("tensor metadata other than flags refused")
    t = _rebuild_tensor(storage, storage_offset, size, stride)
    t.requires_grad = requires_grad
    if metadata:
        torch._utils.set_tensor_metadata(t, metadata)
    return t


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if type(data) is not torch.Tensor:
        raise pickle.UnpicklingError(f"parameter data is a {type(data).__name__}, not a tensor")
    _no_hooks(backward_hooks)
    return torch.nn.Parameter(data, bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state:  # attributes set on a parameter: never in a network checkpoint
        raise pickle.UnpicklingError("parameter with extra state refused")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


_TENSOR_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    new_type = new_type.cls if isinstance(new_type, _ClassToken) else new_type
    if new_type not in _TENSOR_TYPES:
        raise UnsafePickleError(f"tensor subclass {new_type!r} refused")
    if func not in _TENSOR_REBUILDERS:
        raise pickle.UnpicklingError(
            f"_rebuild_from_type_v2 of {getattr(func, '__name__', type(func).__name__)} refused"
        )
    if state:
        raise pickle.UnpicklingError("tensor with extra state refused")
    if not isinstance(args, tuple):
        raise pickle.UnpicklingError("_rebuild_from_type_v2 arguments are not a tuple")
    ret = func(*args)
    return ret if type(ret) is new_type else ret.as_subclass(new_type)


def _pickles_in_storage_blob(b: bytes, where: str) -> None:
    """Scan the pickles of a legacy ``torch.save`` blob (magic, protocol, system info, the
    storage, its keys) for structure bombs before torch's unpickler builds them."""
    fh = io.BytesIO(b)
    for _ in range(5):
        scan_pickle_structure(fh, where)


def _load_storage_from_bytes(b: bytes):
    # A tensor storage pickled on its own: a legacy torch.save blob; torch's weights-only loader reads it.
    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    _pickles_in_storage_blob(bytes(b), "a tensor storage blob")
    try:
        storage = torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafePickleError(f"a tensor storage blob was refused by torch's weights-only unpickler: {err}") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"a tensor storage blob holds a {type(storage).__name__}, not a storage")
    if storage._untyped_storage.nbytes() > len(b):  # its data must come from the blob itself
        raise pickle.UnpicklingError(
            f"a tensor storage blob of {len(b)} bytes declares {storage._untyped_storage.nbytes()} bytes of data"
        )
    return storage


def _numpy_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickleError("numpy object dtype refused")
    return dt


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy scalar of object dtype refused")
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar payload is not bytes")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_reconstruct(subtype, shape, dtype):
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') then fills it (BUILD) from
    # bytes of the pickle, which numpy checks against the shape: only that form is accepted,
    # so no array is ever allocated larger than the data the file holds.
    subtype = subtype.cls if isinstance(subtype, _ClassToken) else subtype
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy array subtype {subtype!r} refused")
    if tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"numpy array reconstructed with shape {tuple(shape)!r}, not numpy's (0,)")
    return np.ndarray.__new__(np.ndarray, (0,), np.dtype(np.uint8))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _ClassToken(torch.Tensor),
        ("torch.nn.parameter", "Parameter"): _ClassToken(torch.nn.Parameter),
        ("torch", "device"): torch.device,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): _ClassToken(np.ndarray),
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
    }
    for name in dir(torch):  # dtypes (torch.float32 …) are inert singletons
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    allowed.update(_PLAIN_STUBS)
    return allowed


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals (see the module docstring)."""

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        raise UnsafePickleError(
            f"refusing global {module}.{name}: not on the allow-list for EDM network pickles "
            "(loading it could execute code)"
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"unexpected persistent id {_short_repr(pid)} in a plain pickle")


def _short_repr(v) -> str:
    """A bounded repr of an untrusted value (a full repr of a crafted structure may never end)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 3, 60, 60
    return r.repr(v)


def read_edm_pickle(path: str | Path) -> dict:
    """Unpickle an EDM network pickle safely: persistent objects become :class:`PersistentObject`.

    The opcode stream is scanned first (:func:`scan_pickle_structure`), then read
    by :class:`RestrictedUnpickler`. Any failure is an :class:`UnsafePickleError`
    (a global or an object that could run code or expose memory) or a
    :class:`CheckpointError` (anything else), both naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EDM network pickle {path} does not exist")
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
        scan_pickle_structure(fh, str(path))
        fh.seek(0)
        try:
            data = RestrictedUnpickler(fh).load()
        except UnsafePickleError as err:
            raise UnsafePickleError(f"{path}: {err}") from None
        except CheckpointError as err:  # a structure bomb in an embedded storage blob
            raise CheckpointError(f"{path}: {err}") from None
        except MemoryError:
            raise CheckpointError(
                f"{path}: reading it needs more memory than this machine has; a network "
                "checkpoint of the paper does not: the file is crafted or corrupted"
            ) from None
        except Exception as err:  # noqa: BLE001 - anything else: not a readable pickle
            raise CheckpointError(
                f"{path} is not a readable EDM network pickle: {type(err).__name__}: {str(err)[:500]}"
            ) from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict with an 'ema' network, got {type(data).__name__}")
    if not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{path}: the top-level dict has keys that are not strings")
    return data


# =================================================================== state dicts
def module_state_dict(obj, prefix: str = "", *, where: str = "") -> collections.OrderedDict[str, torch.Tensor]:
    """Flatten a stub module tree into a state dict (parameters and persistent buffers, pre-order)."""
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    _collect(obj, prefix, out, where or "checkpoint")
    return out


def _collect(obj, prefix: str, out: dict, where: str) -> None:
    if not isinstance(obj, (PersistentObject, PlainModule)):
        raise CheckpointError(f"{where}: {prefix.rstrip('.') or '<root>'} is a {type(obj).__name__}, not a module")
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: module {prefix.rstrip('.') or '<root>'} has no recorded state")
    params = state.get("_parameters") or {}
    buffers = state.get("_buffers") or {}
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for name, t in params.items():
        if t is not None:
            out[prefix + name] = _as_tensor(t, prefix + name, where)
    for name, t in buffers.items():
        if t is not None and name not in non_persistent:
            out[prefix + name] = _as_tensor(t, prefix + name, where)
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out, where)


def _as_tensor(t, key, where) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{where}: {key} is a {type(t).__name__}, not a tensor")
    return t.detach()


def _child(obj: PersistentObject | PlainModule, name: str, where: str):
    child = (obj.state.get("_modules") or {}).get(name)
    if child is None:
        raise CheckpointError(f"{where}: {obj.class_name} has no sub-module {name!r}")
    return child


# ============================================================== EDM networks
_SONG_DEFAULTS = dict(
    label_dim=0, augment_dim=0, model_channels=128, channel_mult=[1, 2, 2, 2], channel_mult_emb=4, num_blocks=4,
    attn_resolutions=[16], dropout=0.10, label_dropout=0, embedding_type="positional", channel_mult_noise=1,
    encoder_type="standard", decoder_type="standard", resample_filter=[1, 1],
)  # fmt: skip
_DHARIWAL_DEFAULTS = dict(
    label_dim=0, augment_dim=0, model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4, num_blocks=3,
    attn_resolutions=[32, 16, 8], dropout=0.10, label_dropout=0,
)  # fmt: skip
_NCSN_FIXED = dict(  # what deepinv's NCSNpp(model_type="ncsn") builds: EDM's --arch=ncsnpp
    embedding_type="fourier",
    channel_mult_noise=2,
    encoder_type="residual",
    decoder_type="standard",
    resample_filter=[1, 3, 3, 1],
)
_DDPM_FIXED = dict(  # NCSNpp(model_type="ddpm"): EDM's --arch=ddpmpp
    embedding_type="positional",
    channel_mult_noise=1,
    encoder_type="standard",
    decoder_type="standard",
    resample_filter=[1, 1],
)
_PRECONDS = {"EDMPrecond": "edm", "VEPrecond": "ve"}


@dataclass
class EDMNetworkSpec:
    """What an EDM pickle's network is: preconditioning, inner UNet class and kwargs, weights."""

    precond: str  # "edm" (EDMPrecond) or "ve" (VEPrecond)
    precond_class: str
    model_class: str  # "SongUNet" or "DhariwalUNet"
    model_kwargs: dict  # the inner UNet's constructor kwargs (defaults filled in)
    state_dict: collections.OrderedDict[str, torch.Tensor]  # keys relative to the inner UNet
    img_resolution: int
    img_channels: int
    label_dim: int
    sigma_data: float
    sigma_min: float
    sigma_max: float
    use_fp16: bool
    source: str = ""
    module_src_sha256: dict = field(default_factory=dict)
    persistence_version: Any = None
    other_keys: list = field(default_factory=list)

    def metadata(self) -> dict:
        return dict(
            source=self.source,
            format="edm-persistence-pickle",
            precond=self.precond,
            precond_class=self.precond_class,
            model_class=self.model_class,
            model_kwargs=dict(self.model_kwargs),
            img_resolution=self.img_resolution,
            img_channels=self.img_channels,
            label_dim=self.label_dim,
            sigma_data=self.sigma_data,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            use_fp16=self.use_fp16,
            module_src_sha256=dict(self.module_src_sha256),
            persistence_version=self.persistence_version,
            other_keys=list(self.other_keys),
            num_tensors=len(self.state_dict),
        )


def _plain(v):
    """Init kwargs as plain Python values (lists for sequences, floats/ints for numpy scalars)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(u) for u in v]
    if isinstance(v, dict):
        return {k: _plain(u) for k, u in v.items()}
    return v


def edm_network_spec(data: Mapping, key: str = "ema", *, source: str = "") -> EDMNetworkSpec:
    """Interpret the unpickled ``data[key]`` (a persistent ``EDMPrecond`` / ``VEPrecond``)."""
    where = source or "EDM pickle"
    if key not in data:
        raise CheckpointError(f"{where}: no {key!r} entry (keys: {sorted(map(str, data))})")
    root = data[key]
    if not isinstance(root, PersistentObject):
        raise CheckpointError(f"{where}: {key!r} is a {type(root).__name__}, not a persistent EDM network")
    if root.class_name not in _PRECONDS:
        raise CheckpointError(
            f"{where}: network class {root.class_name!r} is not supported (supported: {sorted(_PRECONDS)})"
        )
    precond = _PRECONDS[root.class_name]
    st = root.state
    inner = _child(root, "model", where)
    if not isinstance(inner, PersistentObject) or inner.class_name not in ("SongUNet", "DhariwalUNet"):
        name = getattr(inner, "class_name", type(inner).__name__)
        raise CheckpointError(f"{where}: inner model {name!r} is not SongUNet or DhariwalUNet")
    if inner.init_args:
        raise CheckpointError(
            f"{where}: {inner.class_name} was built with positional arguments; cannot read its kwargs"
        )
    kw = _plain(inner.init_kwargs)
    for req in ("img_resolution", "in_channels", "out_channels"):
        if req not in kw:
            raise CheckpointError(f"{where}: {inner.class_name} init kwargs lack {req!r}")
    defaults = _SONG_DEFAULTS if inner.class_name == "SongUNet" else _DHARIWAL_DEFAULTS
    unknown = set(kw) - set(defaults) - {"img_resolution", "in_channels", "out_channels"}
    if unknown:
        raise CheckpointError(f"{where}: unknown {inner.class_name} arguments {sorted(unknown)}")
    model_kwargs = {**defaults, **kw}

    def attr(name, default):
        v = st.get(name, root.init_kwargs.get(name, default))
        return _plain(v)

    srcs = {}
    for obj in _walk(root):
        if isinstance(obj, PersistentObject):
            srcs.setdefault(obj.class_name, obj.module_src_sha256)
    return EDMNetworkSpec(
        precond=precond,
        precond_class=root.class_name,
        model_class=inner.class_name,
        model_kwargs=model_kwargs,
        state_dict=module_state_dict(inner, where=where),
        img_resolution=int(attr("img_resolution", kw["img_resolution"])),
        img_channels=int(attr("img_channels", kw["in_channels"])),
        label_dim=int(attr("label_dim", kw.get("label_dim", 0))),
        sigma_data=float(attr("sigma_data", 0.5)) if precond == "edm" else float("nan"),
        sigma_min=float(attr("sigma_min", 0.0 if precond == "edm" else 0.02)),
        sigma_max=float(attr("sigma_max", math.inf if precond == "edm" else 100.0)),
        use_fp16=bool(attr("use_fp16", False)),
        source=source,
        module_src_sha256=srcs,
        persistence_version=root.version,
        other_keys=sorted(str(k) for k in data if k != key),
    )


def _walk(obj):
    yield obj
    state = getattr(obj, "state", None)
    if isinstance(state, dict):
        for child in (state.get("_modules") or {}).values():
            if child is not None:
                yield from _walk(child)


def edm_group_norms(net: nn.Module) -> nn.Module:
    """Give every ``nn.GroupNorm`` of a deepinv EDM port EDM's group count ``min(32, C // 4)`` (in place)."""
    for m in net.modules():
        if isinstance(m, nn.GroupNorm):
            groups = min(32, m.num_channels // 4)
            if groups < 1 or m.num_channels % groups:
                raise CheckpointError(f"GroupNorm over {m.num_channels} channels has no valid EDM group count")
            m.num_groups = groups
    return net


def build_edm_network(spec: EDMNetworkSpec, *, load_weights: bool = True) -> nn.Module:
    """deepinv's port of the spec's UNet (EDM group norms), with the checkpoint's weights loaded strictly."""
    import deepinv.models as dm

    kw = dict(spec.model_kwargs)
    common = dict(
        img_resolution=int(kw["img_resolution"]),
        in_channels=int(kw["in_channels"]),
        out_channels=int(kw["out_channels"]),
        label_dim=int(kw["label_dim"]),
        augment_dim=int(kw["augment_dim"]),
        model_channels=int(kw["model_channels"]),
        channel_mult=tuple(int(m) for m in kw["channel_mult"]),
        channel_mult_emb=int(kw["channel_mult_emb"]),
        num_blocks=int(kw["num_blocks"]),
        attn_resolutions=tuple(int(r) for r in kw["attn_resolutions"]),
        dropout=float(kw["dropout"]),
        label_dropout=float(kw["label_dropout"]),
        pretrained=None,
    )
    where = spec.source or "EDM pickle"
    if spec.model_class == "SongUNet":
        arch = {k: _plain(kw[k]) for k in _NCSN_FIXED}
        if arch == _NCSN_FIXED:
            model_type = "ncsn"
        elif arch == _DDPM_FIXED:
            model_type = "ddpm"
        else:
            raise CheckpointError(
                f"{where}: SongUNet configuration {arch} is neither NCSN++ {_NCSN_FIXED} nor DDPM++ {_DDPM_FIXED}, "
                "the two that deepinv.models.NCSNpp builds"
            )
        try:
            net = dm.NCSNpp(model_type=model_type, **common)
        except ValueError as err:
            raise CheckpointError(f"{where}: deepinv cannot build this SongUNet ({err})") from err
    else:
        try:
            net = dm.ADMUNet(**common)
        except ValueError as err:
            raise CheckpointError(f"{where}: deepinv cannot build this DhariwalUNet ({err})") from err
    edm_group_norms(net)
    if load_weights:
        _load_strict(net, spec.state_dict, where)
    return net.eval().requires_grad_(False)


def _load_strict(net: nn.Module, sd: Mapping[str, torch.Tensor], where: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: missing key {missing[0]!r}{more} ({len(sd)} tensors in the checkpoint)")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{where}: unexpected key {unexpected[0]!r}{more} (does the configuration match?)")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}: {k!r} has shape {tuple(sd[k].shape)}, the network expects {tuple(v.shape)}"
            )
    net.load_state_dict({k: sd[k].to(v.dtype) for k, v in expected.items()}, strict=True)


class EDMDenoiser(nn.Module):
    """EDM's preconditioned denoiser D(x; σ) around a deepinv UNet, in EDM's [−1, 1] image scale.

    ``precond="edm"`` (EDMPrecond): c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²),
    c_in = 1/√(σ²+σ_d²), c_noise = ¼ log σ. ``precond="ve"`` (VEPrecond): c_skip = 1,
    c_out = σ, c_in = 1, c_noise = log(σ/2). Unlike NVlabs' wrappers nothing is cast
    to float32 or float16: everything runs in the network's dtype.
    """

    def __init__(self, net: nn.Module, precond: str, sigma_data: float = 0.5, label_dim: int = 0):
        super().__init__()
        if precond not in ("edm", "ve"):
            raise ValueError(f"precond must be 'edm' or 've', got {precond!r}")
        self.net = net
        self.precond = precond
        self.sigma_data = float(sigma_data)
        self.label_dim = int(label_dim)

    def _labels(self, class_labels, batch: int, like: torch.Tensor):
        if self.label_dim == 0:
            return None
        if class_labels is None:  # EDM's default: a zero label vector
            return torch.zeros(1, self.label_dim, dtype=like.dtype, device=like.device)
        if class_labels.ndim == 1 and not class_labels.is_floating_point():
            return nn.functional.one_hot(class_labels.long(), self.label_dim).to(like.dtype)
        return class_labels.to(like.dtype).reshape(-1, self.label_dim)

    def _raw(self, x, sigma, class_labels):
        """(c_skip − 1, c_out, F(c_in x, c_noise)) with σ of shape (B,)."""
        s = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        if self.precond == "edm":
            sd2 = self.sigma_data**2
            total = s * s + sd2
            c_in = torch.rsqrt(total)
            c_out = s * self.sigma_data * c_in
            c_skip_m1 = -(s * s) / total
            c_noise = torch.log(sigma.to(x.dtype)) / 4
        else:
            c_in = torch.ones_like(s)
            c_out = s
            c_skip_m1 = torch.zeros_like(s)
            c_noise = torch.log(0.5 * sigma.to(x.dtype))
        F_x = self.net.forward_unet(c_in * x, c_noise.flatten(), class_labels=self._labels(class_labels, x.shape[0], x))
        return c_skip_m1, c_out, F_x.to(x.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """D(x; σ) = c_skip x + c_out F(c_in x, c_noise)."""
        c_skip_m1, c_out, F_x = self._raw(x, sigma, class_labels)
        return x + c_skip_m1 * x + c_out * F_x

    def score(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """(D(x; σ) − x)/σ², written as ((c_skip − 1) x + c_out F)/σ² to avoid cancelling at small σ."""
        c_skip_m1, c_out, F_x = self._raw(x, sigma, class_labels)
        s2 = sigma.to(x.dtype).reshape(-1, 1, 1, 1) ** 2
        return (c_skip_m1 / s2) * x + (c_out / s2) * F_x


def load_edm_pickle(path: str | Path, key: str = "ema") -> tuple[EDMDenoiser, dict]:
    """Read an EDM network pickle without executing it: (denoiser in [−1, 1] scale, metadata).

    Every failure names the file: :class:`UnsafePickleError`, :class:`CheckpointError`
    (an unexpected error while interpreting the unpickled objects included).
    """
    path = Path(path)
    data = read_edm_pickle(path)
    try:
        spec = edm_network_spec(data, key, source=str(path))
        net = build_edm_network(spec)
    except CheckpointError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
        MemoryError,
        RuntimeError,
    ) as err:  # values of unexpected types or sizes in a crafted file
        raise CheckpointError(
            f"{path}: cannot interpret the network it holds: {type(err).__name__}: {str(err)[:500]}"
        ) from err
    den = EDMDenoiser(net, spec.precond, spec.sigma_data if spec.precond == "edm" else 0.5, spec.label_dim)
    return den.eval().requires_grad_(False), spec.metadata()


# ========================================================= score_sde checkpoints
_SCORE_SDE_IGNORED = {"sigmas"}  # discrete noise levels (unused by continuous models)


def read_score_sde_checkpoint(path: str | Path) -> dict:
    """``torch.load`` a score_sde checkpoint with the weights-only unpickler (memory-mapped when possible)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"score_sde checkpoint {path} does not exist")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafePickleError(f"{path}: refused by torch's weights-only unpickler: {err}") from None
    except Exception as err:  # noqa: BLE001 - anything else: not a readable checkpoint
        raise CheckpointError(f"{path} is not a readable score_sde checkpoint: {type(err).__name__}: {err}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: expected a score_sde checkpoint with a 'model' state dict, got {keys}")
    return ckpt


def _strip_module_prefix(sd: Mapping[str, torch.Tensor], where: str) -> collections.OrderedDict[str, torch.Tensor]:
    keys = list(sd)
    prefixed = [k.startswith("module.") for k in keys]
    if any(prefixed) and not all(prefixed):
        raise CheckpointError(f"{where}: 'model' mixes keys with and without the DataParallel 'module.' prefix")
    out = collections.OrderedDict()
    for k in keys:
        out[k[len("module.") :] if k.startswith("module.") else k] = sd[k]
    return out


def load_score_sde_checkpoint(
    path: str | Path,
    config: ScoreSDENCSNppConfig | Mapping | None = None,
    *,
    use_ema: bool = True,
) -> ScoreSDENCSNpp:
    """score_sde NCSN++ from ``checkpoint_N.pth`` with its EMA weights (``net.checkpoint_meta`` says what was read).

    ``config``: a :class:`ScoreSDENCSNppConfig`, a score_sde-style mapping, or
    None for ``ve/ffhq_256_ncsnpp_continuous``.
    """
    path = Path(path)
    where = str(path)
    if config is None:
        config = FFHQ256_NCSNPP_CONTINUOUS
    elif not isinstance(config, ScoreSDENCSNppConfig):
        config = ScoreSDENCSNppConfig.from_mapping(config)
    ckpt = read_score_sde_checkpoint(path)
    raw = ckpt["model"]
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{where}: 'model' is a {type(raw).__name__}, not a state dict")
    sd = _strip_module_prefix(raw, where)
    ignored = [k for k in sd if k in _SCORE_SDE_IGNORED]
    for k in ignored:
        del sd[k]
    net = ScoreSDENCSNpp(config)
    _load_strict(net, sd, where)

    meta = dict(source=where, format="score_sde", use_ema=use_ema, step=_scalar(ckpt.get("step")), ignored_keys=ignored)
    if use_ema:
        ema = ckpt.get("ema")
        if not isinstance(ema, Mapping) or "shadow_params" not in ema:
            raise CheckpointError(f"{where}: missing key 'ema' / 'shadow_params' (use_ema=False loads the raw weights)")
        shadow = list(ema["shadow_params"])
        trainable = set(net.trainable_parameter_names())
        params = dict(net.named_parameters())
        order = [k for k in sd if k in trainable]  # the checkpoint's registration order
        if len(order) != len(trainable):
            raise CheckpointError(f"{where}: cannot order the trainable parameters from the 'model' keys")
        if len(shadow) != len(order):
            raise CheckpointError(
                f"{where}: 'ema' holds {len(shadow)} shadow parameters, the network has {len(order)} trainable ones"
            )
        with torch.no_grad():
            for k, s in zip(order, shadow):
                if not isinstance(s, torch.Tensor) or tuple(s.shape) != tuple(params[k].shape):
                    shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                    raise CheckpointError(
                        f"{where}: EMA shadow parameter for {k!r} has shape {shape}, expected {tuple(params[k].shape)}"
                    )
                params[k].copy_(s.to(params[k].dtype))
        meta.update(ema_decay=_scalar(ema.get("decay")), ema_num_updates=_scalar(ema.get("num_updates")))
    net.checkpoint_meta = meta
    return net.eval().requires_grad_(False)


def _scalar(v):
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return v
