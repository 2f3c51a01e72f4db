"""Which path vggkern's nn modules take on CPU tensors.

CUDA tensors always run vggkern's kernels. CPU tensors given to the nn modules
(``vggkern.nn.Conv3x3``, ``vggkern.nn.MaxPool2x2``, and so the models and converted
models) run either

- ``"torch"`` (the default): PyTorch's own CPU ops (F.conv2d, relu, max_pool2d) —
  fast, so a CPU user is not punished; or
- ``"emulator"``: vggkern's CUDA kernels' own source through the SIMT emulator —
  exact, slow (seconds per VGG16 image): for verification.

The ops themselves (``vggkern.conv3x3``, ``vggkern.maxpool2x2``, ``torch.ops.vggkern.*``)
always run vggkern's kernels, whatever this setting.

The setting is process-wide (a module-level global, not thread-local): changing it
while another thread runs a model changes that thread's path too. The initial value
comes from the environment variable ``VGGKERN_CPU_BACKEND`` (default "torch").

torch.compile: the modules read the setting through ``get_cpu_backend()`` in their
forward; dynamo guards on the value, so changing it recompiles rather than silently
running the old path, and each compiled graph holds plain aten ops ("torch") or
vggkern ops ("emulator" or CUDA).
"""
import os

CPU_BACKENDS = ("torch", "emulator")


def _checked(name, where="vggkern.set_cpu_backend"):
    if name not in CPU_BACKENDS:
        valid = ", ".join(f'"{b}"' for b in CPU_BACKENDS)
        raise ValueError(f'{where}: unknown CPU backend "{name}"; expected one of {valid}')
    return name


_cpu_backend = _checked(os.environ.get("VGGKERN_CPU_BACKEND", "torch"), "the environment variable VGGKERN_CPU_BACKEND")


def get_cpu_backend() -> str:
    """The CPU path of vggkern's nn modules: "torch" (PyTorch's ops) or "emulator"."""
    return _cpu_backend


class _Restore:
    """What ``set_cpu_backend`` returns: usable as a context manager that restores the
    previous setting on exit (like ``torch.set_grad_enabled``)."""

    def __init__(self, previous, current):
        self.previous, self.current = previous, current

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _cpu_backend
        _cpu_backend = self.previous
        return False

    def __repr__(self):
        return f"set_cpu_backend({self.current!r}) (previous: {self.previous!r})"


def set_cpu_backend(name: str) -> _Restore:
    """Set the CPU path of vggkern's nn modules: "torch" or "emulator".

    Takes effect at once. The returned object also works as a context manager,
    restoring the previous setting on exit (even on an exception)::

        vggkern.set_cpu_backend("emulator")          # from now on
        with vggkern.set_cpu_backend("emulator"):    # for this block only
            ...
    """
    global _cpu_backend
    previous, _cpu_backend = _cpu_backend, _checked(name)
    return _Restore(previous, name)


def cpu_backend(name: str) -> "_CpuBackend":
    """Context manager (and decorator): run the block with the CPU backend ``name``,
    then restore the previous one, even on an exception::

        with vggkern.cpu_backend("emulator"):
            y = model(x)   # vggkern's kernels through the SIMT emulator
    """
    return _CpuBackend(name)


class _CpuBackend:
    def __init__(self, name):
        self.name = _checked(name)
        self._stack = []

    def __enter__(self):
        global _cpu_backend
        self._stack.append(_cpu_backend)
        _cpu_backend = self.name
        return self

    def __exit__(self, *exc):
        global _cpu_backend
        _cpu_backend = self._stack.pop()
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self):
        return f"cpu_backend({self.name!r})"


def describe_path(cpu_backend_name: str | None = None) -> str:
    """One phrase saying which code runs, e.g. for reprs and reports."""
    name = get_cpu_backend() if cpu_backend_name is None else cpu_backend_name
    cpu = "torch ops" if name == "torch" else "vggkern kernels via the SIMT emulator"
    return f"CUDA: vggkern kernels, CPU: {cpu}"
