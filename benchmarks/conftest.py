"""pytest options and markers for the benchmark suites.

  --bench-set {auto,smoke,quick,full}   which cases run (default auto: 'full' with a GPU,
                                        'smoke' without); --quick is --bench-set quick.
  --bench-deadline EPOCH / --bench-budget SECONDS
                                        cases that would start later are skipped with the
                                        reason 'time budget exhausted' (the device script
                                        uses this to finish inside its limit).
Markers (each case carries one): bench_smoke (CPU, tiny, CI), bench_quick (the GPU
subset), bench_full (the rest of the GPU matrix). '-m bench_quick' selects likewise.
Without a GPU the GPU cases are collected and skipped with the reason; the smoke cases
run on the CPU (our kernels through the SIMT emulator) and never fail on a timing.
"""
import time

import pytest
import torch

from benchmarks.cases import Case

TIERS = {"smoke": ("smoke",), "quick": ("quick",), "full": ("quick", "full")}
_SKIPPED = []
_FAILED = []  # {"id", "error"}: cases that raised, or whose result was wrong (as benchmarks.run lists them)


def pytest_addoption(parser):
    g = parser.getgroup("vggkern benchmarks")
    g.addoption("--bench-set", default="auto", choices=("auto", "smoke", "quick", "full"),
                help="which benchmark cases run (auto: full with a GPU, smoke without)")
    g.addoption("--quick", action="store_true", help="same as --bench-set quick")
    g.addoption("--bench-deadline", type=float, default=None,
                help="epoch seconds after which remaining cases are skipped")
    g.addoption("--bench-budget", type=float, default=None,
                help="seconds from session start after which remaining cases are skipped")


def bench_set(config):
    if config.getoption("--quick"):
        return "quick"
    s = config.getoption("--bench-set")
    if s == "auto":
        return "full" if torch.cuda.is_available() else "smoke"
    return s


def pytest_configure(config):
    for tier, what in (("smoke", "CPU smoke case (tiny, CI)"), ("quick", "GPU quick subset"),
                       ("full", "GPU full matrix")):
        config.addinivalue_line("markers", f"bench_{tier}: {what}")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")
    deadline = config.getoption("--bench-deadline")
    budget = config.getoption("--bench-budget")
    if budget is not None:
        deadline = min(deadline or float("inf"), time.time() + budget)
    config._vk_deadline = deadline
    config._vk_set = bench_set(config)
    if config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(_BenchmarkHooks(), "vggkern-benchmark-hooks")


def _bench_case(item):
    """The benchmark Case an item runs, or None (tests/ items pass through untouched)."""
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    return case if isinstance(case, Case) else None


def pytest_collection_modifyitems(config, items):
    """Keep the selected tiers (others are deselected), run important cases first."""
    keep_tiers = TIERS[config._vk_set]
    keep, drop = [], []
    for item in items:
        case = _bench_case(item)
        if case is None:
            keep.append(item)
            continue
        item.add_marker(getattr(pytest.mark, f"bench_{case.tier}"))
        if case.tier != "smoke":
            item.add_marker(pytest.mark.gpu)
        # Without a GPU, 'auto' still collects the GPU matrix so its skip reason shows.
        gpu_listed = config._vk_set == "smoke" and config.getoption("--bench-set") == "auto"
        (keep if case.tier in keep_tiers or gpu_listed else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    order = {"conv": 1, "maxpool": 0, "layout": 0, "network": 2}

    def prio(item):
        case = _bench_case(item)
        return (case.priority, order.get(case.group, 9)) if case else (-1, 0)

    items.sort(key=prio)


class _BenchmarkHooks:
    """pytest-benchmark hooks; registered only where that plugin is active."""

    @staticmethod
    def pytest_benchmark_update_machine_info(config, machine_info):
        from . import timing
        machine_info["vggkern_env"] = timing.environment("cuda" if config._vk_set != "smoke" else "cpu")

    @staticmethod
    def pytest_benchmark_update_json(config, benchmarks, output_json):
        output_json["vggkern_bench_set"] = config._vk_set
        output_json["vggkern_skipped"] = list(_SKIPPED)
        output_json["vggkern_failed"] = list(_FAILED)


class _NoBenchmark:
    """Stands in for pytest-benchmark's fixture where the plugin is missing or disabled."""

    def __init__(self):
        self.extra_info = {}
        self.group = None

    def pedantic(self, target, rounds=1, iterations=1, **_):
        for _ in range(rounds * iterations):
            target()


def _report_our_timing(vk_benchmark, row):
    """Give pytest-benchmark the case's timing as its own statistics (journal.timing_stats),
    so that its table, its JSON's "stats" and `pytest-benchmark compare` show what
    extra_info reports. The plugin wants a call it times itself; an empty one serves, and
    its host-clock figure is then replaced."""
    vk_benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    meta = getattr(vk_benchmark, "stats", None)  # pytest-benchmark's Metadata (None: _NoBenchmark)
    if meta is None:
        return
    from .journal import timing_stats

    meta.stats = timing_stats(row)
    meta.iterations = row["iters"]
    meta.options = dict(meta.options, timer=row["method"])


def _get_benchmark(request):
    """pytest-benchmark's fixture, asked for only once a case really runs (asking for it
    in a test that then skips makes the plugin warn)."""
    if request.config.pluginmanager.hasplugin("benchmark"):
        return request.getfixturevalue("benchmark")
    return _NoBenchmark()


@pytest.fixture
def run_bench(request):
    """run_bench(case): time the case, put its row in benchmark.extra_info, or skip."""
    from . import journal, timing
    from .cases import SkipCase, default_cfg, run_case, wrong_result

    def run(case):
        config = request.config
        if case.tier == "smoke" and config._vk_set != "smoke":
            pytest.skip("CPU smoke case: runs with --bench-set smoke (or where no GPU is visible)")
        if config._vk_deadline is not None and time.time() + case.cost_s > config._vk_deadline:
            _SKIPPED.append({"id": case.id, "reason": "time budget exhausted"})
            pytest.skip("time budget exhausted (--bench-deadline/--bench-budget)")
        try:
            row = run_case(case, default_cfg(quick=config._vk_set == "quick"))
        except SkipCase as e:
            _SKIPPED.append({"id": case.id, "reason": str(e)})
            pytest.skip(str(e))
        except Exception as e:
            _FAILED.append({"id": case.id, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            raise
        journal.record(case, row, lambda: timing.environment("cpu" if case.tier == "smoke" else "cuda"),
                       config._vk_set)
        vk_benchmark = _get_benchmark(request)
        vk_benchmark.group = f"{case.group}"
        vk_benchmark.extra_info.update(row)
        _report_our_timing(vk_benchmark, row)
        wrong = wrong_result(row)
        if wrong:  # recorded above (what ran, how fast), but a wrong result fails the case
            _FAILED.append({"id": case.id, "error": wrong})
            pytest.fail(f"{case.id}: {wrong}", pytrace=False)
        return row

    return run
