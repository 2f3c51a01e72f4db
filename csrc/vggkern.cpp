// The vggkern library: every op schema in one TORCH_LIBRARY, and the vggkern._C
// Python module (importing it registers the ops; build_info() says what was built).
#include <Python.h>

#include <string>
#include <vector>
#include <torch/library.h>
#include <torch/version.h>

#include "common/backends.h"
#include "common/conv3x3_implicit_gemm_plan.h"
#include "common/conv3x3_tables.h"
#include "emu/bank_stats.h"
#include "emu/global_stats.h"
#include "ops/conv3x3.h"

#if VK_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#ifndef VK_CUDA_ARCHS
#define VK_CUDA_ARCHS ""
#endif

TORCH_LIBRARY(vggkern, m) {
  m.def("maxpool2x2(Tensor x) -> Tensor");
  m.def("conv3x3(Tensor x, Tensor weight, Tensor? bias=None, bool relu=False, bool pool=False, str algo=\"auto\", "
        "bool? allow_tf32=None, bool x_tf32=False, bool y_tf32=False) -> Tensor");
  m.def("winograd_weight(Tensor weight, int tile) -> Tensor");
  m.def("tensor_core_weight(Tensor weight) -> Tensor");
  m.def("_tensor_core_input(Tensor x) -> Tensor");  // implicit_gemm's x layout: tests, benchmarks
  m.def("_winograd_matrices(int tile) -> (Tensor, Tensor, Tensor)");
  // conv3x3's derivatives as composite ops (aten ops only, so differentiable), for its
  // Python autograd.Function (torch.func, forward-mode AD: csrc/ops/autograd.cpp), which
  // is _conv3x3_forward_ad's kernel.
  m.def("_conv3x3_forward_ad(Tensor x, Tensor weight, Tensor? bias, bool relu, bool pool, str algo, "
        "bool? allow_tf32, bool x_tf32, bool y_tf32) -> Tensor");
  // y: the forward's output, from which relu takes ReLU's mask (without the pool, no
  // recomputation of the pre-activation); None recomputes the mask.
  m.def("_conv3x3_backward(Tensor grad, Tensor x, Tensor weight, Tensor? bias, bool relu, bool pool, "
        "bool[3] output_mask, Tensor? y=None) -> (Tensor, Tensor, Tensor)");
  m.def("_conv3x3_jvp(Tensor x, Tensor weight, Tensor? bias, Tensor? x_tangent, Tensor? weight_tangent, "
        "Tensor? bias_tangent, bool relu, bool pool, Tensor? y=None) -> Tensor");
}

namespace {

PyObject* build_info(PyObject*, PyObject*) {
#if VK_WITH_CUDA
  const int cuda_runtime = CUDART_VERSION;
  PyObject* cuda = Py_True;
#else
  const int cuda_runtime = 0;
  PyObject* cuda = Py_False;
#endif
#if defined(__x86_64__)
  const char* switcher = "x86-64 assembly";
#else
  const char* switcher = "ucontext";
#endif
#if VK_WITH_CUDA && VK_WGMMA
  PyObject* wgmma = Py_True;  // implicit_gemm's wgmma tiles were built (sm_90a)
#else
  PyObject* wgmma = Py_False;
#endif
  int threads = 0;
  try {
    threads = vk::emu::worker_count();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  return Py_BuildValue("{s:O,s:s,s:O,s:i,s:s,s:i,s:s}", "cuda_kernels", cuda, "cuda_archs", VK_CUDA_ARCHS,
                       "cuda_wgmma", wgmma, "cuda_runtime_version", cuda_runtime, "emulator_context_switch",
                       switcher, "emulator_threads", threads, "torch_version", TORCH_VERSION);
}

// conv3x3's TF32 policy with allow_tf32=None: torch's current setting for cuDNN convolutions.
PyObject* tf32_allowed(PyObject*, PyObject*) { return PyBool_FromLong(vk::tf32_allowed(std::nullopt)); }

// The emulator's shared-memory bank counts (csrc/emu/runtime.h, SharedBankStats).
PyObject* emu_bank_stats(PyObject*, PyObject*) {
  const vk::emu::SharedBankStats s = vk::emu::shared_bank_stats();
  auto counts = [](const vk::emu::SharedBankCounts& c) {
    return Py_BuildValue("{s:K,s:K,s:K}", "instructions", static_cast<unsigned long long>(c.instructions), "ideal",
                         static_cast<unsigned long long>(c.ideal), "wavefronts",
                         static_cast<unsigned long long>(c.wavefronts));
  };
  return Py_BuildValue("{s:N,s:N,s:N,s:N}", "ldmatrix", counts(s.ldmatrix), "cp_async", counts(s.cp_async),
                       "load", counts(s.load), "store", counts(s.store));
}

PyObject* emu_reset_bank_stats(PyObject*, PyObject*) {
  vk::emu::reset_shared_bank_stats();
  Py_RETURN_NONE;
}

// The emulator's global-memory sector counts by kernel (csrc/emu/global_stats.h).
PyObject* emu_global_stats(PyObject*, PyObject*) {
  auto counts = [](const vk::emu::GlobalSectorCounts& c) {
    return Py_BuildValue("{s:K,s:K,s:K,s:K}", "instructions", static_cast<unsigned long long>(c.instructions),
                         "bytes", static_cast<unsigned long long>(c.bytes), "ideal",
                         static_cast<unsigned long long>(c.ideal), "sectors", static_cast<unsigned long long>(c.sectors));
  };
  PyObject* out = PyDict_New();
  if (out == nullptr) return nullptr;
  for (const auto& [kernel, s] : vk::emu::global_sector_stats()) {
    PyObject* v = Py_BuildValue("{s:N,s:N,s:N}", "load", counts(s.load), "store", counts(s.store), "cp_async",
                                counts(s.cp_async));
    if (v == nullptr || PyDict_SetItemString(out, kernel.c_str(), v) != 0) {
      Py_XDECREF(v);
      Py_DECREF(out);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return out;
}

PyObject* emu_reset_global_stats(PyObject*, PyObject*) {
  vk::emu::reset_global_sector_stats();
  Py_RETURN_NONE;
}

// implicit_gemm's plan for a shape (conv3x3_implicit_gemm_plan.h), C as the kernel sees
// it (padded to a multiple of 8): for tests and the benchmarks' model.
PyObject* implicit_gemm_plan(PyObject*, PyObject* args) {
  long long n, c, h, w, k, smem_optin = 0;
  int element_bytes, pool, sm_count, wgmma = 1;
  const char* tile = "";
  if (!PyArg_ParseTuple(args, "LLLLLipi|sLp", &n, &c, &h, &w, &k, &element_bytes, &pool, &sm_count, &tile,
                        &smem_optin, &wgmma))
    return nullptr;
  vk::Conv3x3Args a{};
  a.dtype = element_bytes == 4 ? vk::DType::float32 : vk::DType::float16;
  a.N = n, a.C = (c + 7) / 8 * 8, a.H = h, a.W = w, a.K = k, a.pool = pool != 0, a.sm_count = sm_count;
  a.smem_optin = smem_optin;
  a.wgmma = wgmma != 0;
  try {
    const vk::ImplicitGemmPlan p = tile[0] == '\0'
                                       ? vk::implicit_gemm_plan(a)
                                       : vk::implicit_gemm_plan(a, vk::implicit_gemm_tile_named(tile, "tile"));
    return Py_BuildValue("{s:s,s:i,s:i,s:L,s:L,s:L,s:L,s:i,s:L,s:L,s:O,s:L,s:L,s:L,s:i,s:L}", "tile",
                         vk::implicit_gemm_tile_name(p.tile), "bm", p.bm, "bn", p.bn, "M",
                         static_cast<long long>(p.M), "m_tiles", static_cast<long long>(p.m_tiles), "k_blocks",
                         static_cast<long long>(p.k_blocks), "slices", static_cast<long long>(p.slices), "splits",
                         p.splits, "slices_per_split", static_cast<long long>(p.slices_per_split), "blocks",
                         static_cast<long long>(p.blocks()), "persistent", p.persistent ? Py_True : Py_False,
                         "grid", static_cast<long long>(p.grid()), "dp_items", static_cast<long long>(p.sk.dp_items),
                         "sk_tiles", static_cast<long long>(p.sk.sk_tiles), "max_parts", p.sk.max_parts,
                         "workspace_floats", static_cast<long long>(p.workspace_floats(k)));
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
}

// How the last ws-tile launch copied its stages (vk::last_implicit_gemm_copies): None
// before any, else {"tile", "path": "tma" | "cp_async", "reason": why not tma ("" if it was),
// "stores": "tma" | "pairs" | "nchw_tile", "stores_reason": why not tma, "stream_k": "" (whole
// tiles) or "<sk_tiles> of <tiles> tiles on <grid> blocks"}.
PyObject* implicit_gemm_last_copies(PyObject*, PyObject*) {
  const vk::ImplicitGemmCopies c = vk::last_implicit_gemm_copies();
  if (c.tile.empty()) Py_RETURN_NONE;
  return Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:s}", "tile", c.tile.c_str(), "path", c.path.c_str(), "reason",
                       c.reason.c_str(), "stores", c.stores.c_str(), "stores_reason", c.stores_reason.c_str(),
                       "stream_k", c.stream_k.c_str());
}

// What algo="auto" runs for a call (vk::conv3x3_auto): for the nn modules (which lay the
// weight out for it) and tests. dtype: "float32", "float16" or "bfloat16".
PyObject* conv3x3_auto(PyObject*, PyObject* args) {
  const char* dtype;
  long long n, c, h, w, k;
  int channels_last, pool, tf32;
  if (!PyArg_ParseTuple(args, "sLLLLLppp", &dtype, &n, &c, &h, &w, &k, &channels_last, &pool, &tf32)) return nullptr;
  const std::string d(dtype);
  if (d != "float32" && d != "float16" && d != "bfloat16") {
    PyErr_Format(PyExc_ValueError, "conv3x3_auto: dtype must be float32, float16 or bfloat16, got '%s'", dtype);
    return nullptr;
  }
  const vk::DType t = d == "float32" ? vk::DType::float32 : d == "float16" ? vk::DType::float16 : vk::DType::bfloat16;
  return PyUnicode_FromString(vk::conv3x3_auto(t, channels_last ? vk::Layout::nhwc : vk::Layout::nchw, n, c, h, w, k,
                                               pool != 0, tf32 != 0));
}

static const char* kDtypes[] = {"float32", "float16", "bfloat16"};

// The measured tables conv3x3 uses (common/conv3x3_tables.h: the build's, or those set at
// run time) as Python data, for tests, reports and vggkern.tuned_tables().
PyObject* tuned_tables(PyObject*, PyObject*) {
  const vk::TunedTables tables = vk::tuned_tables();
  PyObject* tiles = PyList_New(0);
  for (const vk::TunedTile* e = tables.tiles; e != tables.tiles + tables.n_tiles; ++e) {
    PyObject* row = Py_BuildValue("{s:L,s:L,s:L,s:L,s:O,s:L,s:s,s:O}", "C", (long long)e->shape.C, "K",
                                  (long long)e->shape.K, "H", (long long)e->shape.H, "W", (long long)e->shape.W, "pool",
                                  e->shape.pool ? Py_True : Py_False, "N", (long long)e->shape.N, "tile",
                                  vk::implicit_gemm_tile_name(e->tile), "tf32", e->tf32 ? Py_True : Py_False);
    PyList_Append(tiles, row);
    Py_DECREF(row);
  }
  PyObject* autos = PyList_New(0);
  for (const vk::TunedAuto* e = tables.autos; e != tables.autos + tables.n_autos; ++e) {
    PyObject* row = Py_BuildValue(
        "{s:s,s:O,s:L,s:L,s:L,s:L,s:O,s:L,s:s}", "dtype", kDtypes[static_cast<int>(e->dtype)], "channels_last",
        e->layout == vk::Layout::nhwc ? Py_True : Py_False, "C", (long long)e->shape.C, "K", (long long)e->shape.K, "H",
        (long long)e->shape.H, "W", (long long)e->shape.W, "pool", e->shape.pool ? Py_True : Py_False, "N",
        (long long)e->shape.N, "algo", e->algo == vk::TunedAlgo::implicit_gemm ? "implicit_gemm" : "direct");
    PyList_Append(autos, row);
    Py_DECREF(row);
  }
  return Py_BuildValue("{s:s,s:N,s:N,s:O}", "source", tables.source, "tiles", tiles, "auto", autos, "run_time",
                       tables.run_time ? Py_True : Py_False);
}

// What a run-time TunedTables points to (kept for the life of the process).
struct RunTimeTables {
  std::vector<vk::TunedTile> tiles;
  std::vector<vk::TunedAuto> autos;
  std::string source;
  vk::TunedTables view;
};

// _set_tuned_tables(source, tiles, autos): use these tables from now on (vggkern/ops.py
// checks them first and builds the rows: tiles (C, K, H, W, pool, N, tile name, tf32),
// autos (dtype name, channels_last, C, K, H, W, pool, N, algo name)); _set_tuned_tables()
// with no arguments: the build's again.
PyObject* set_tuned_tables(PyObject*, PyObject* args) {
  const char* source = nullptr;
  PyObject *tiles = nullptr, *autos = nullptr;
  if (!PyArg_ParseTuple(args, "|sOO", &source, &tiles, &autos)) return nullptr;
  if (source == nullptr) {
    vk::set_run_time_tables(nullptr);
    Py_RETURN_NONE;
  }
  if (tiles == nullptr || autos == nullptr || !PyList_Check(tiles) || !PyList_Check(autos)) {
    PyErr_SetString(PyExc_TypeError, "_set_tuned_tables(source, tiles: list, autos: list)");
    return nullptr;
  }
  auto* t = new RunTimeTables{{}, {}, source, {}};
  try {
    for (Py_ssize_t i = 0; i < PyList_Size(tiles); ++i) {
      long long c, k, h, w, n;
      int pool, tf32;
      const char* tile;
      if (!PyArg_ParseTuple(PyList_GetItem(tiles, i), "LLLLpLsp", &c, &k, &h, &w, &pool, &n, &tile, &tf32))
        throw std::invalid_argument("");
      t->tiles.push_back({{c, k, h, w, pool != 0, n}, vk::implicit_gemm_tile_named(tile, "a tuned tile"), tf32 != 0});
    }
    for (Py_ssize_t i = 0; i < PyList_Size(autos); ++i) {
      long long c, k, h, w, n;
      int cl, pool;
      const char *dtype, *algo;
      if (!PyArg_ParseTuple(PyList_GetItem(autos, i), "spLLLLpLs", &dtype, &cl, &c, &k, &h, &w, &pool, &n, &algo))
        throw std::invalid_argument("");
      const std::string d = dtype, a = algo;
      int di = 0;
      while (di < 3 && d != kDtypes[di]) ++di;
      if (di == 3 || (a != "direct" && a != "implicit_gemm"))
        throw std::invalid_argument("_set_tuned_tables: bad dtype '" + d + "' or algo '" + a + "'");
      t->autos.push_back({static_cast<vk::DType>(di), cl ? vk::Layout::nhwc : vk::Layout::nchw,
                          {c, k, h, w, pool != 0, n},
                          a == "direct" ? vk::TunedAlgo::direct : vk::TunedAlgo::implicit_gemm});
    }
  } catch (const std::invalid_argument& e) {
    delete t;
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
  t->view = {t->tiles.data(), t->tiles.size(), t->autos.data(), t->autos.size(), t->source.c_str(), true};
  vk::set_run_time_tables(&t->view);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of vggkern contains."},
    {"tf32_allowed", tf32_allowed, METH_NOARGS,
     "Whether conv3x3 lets float32 use TF32 when allow_tf32 is None (torch.backends.cudnn.allow_tf32)."},
    {"emu_bank_stats", emu_bank_stats, METH_NOARGS,
     "The SIMT emulator's shared-memory bank counts since the last reset: for ldmatrix, cp.async and the "
     "kernels' plain ld_shared (load) and st_shared (store), "
     "warp-wide instructions, ideal (conflict-free) wavefronts and the wavefronts the addresses cost."},
    {"emu_reset_bank_stats", emu_reset_bank_stats, METH_NOARGS, "Zero the emulator's bank counts."},
    {"emu_global_stats", emu_global_stats, METH_NOARGS,
     "The SIMT emulator's global-memory counts since the last reset, by kernel name: for the kernels' "
     "ld_global (load) and st_global (store) and cp.async's source (cp_async), warp-wide instructions, "
     "distinct bytes, ideal sectors (those bytes packed: ceil(bytes / 32) per instruction) and the 32-byte "
     "sectors the addresses touch."},
    {"emu_reset_global_stats", emu_reset_global_stats, METH_NOARGS, "Zero the emulator's global-memory counts."},
    {"implicit_gemm_plan", implicit_gemm_plan, METH_VARARGS,
     "implicit_gemm_plan(N, C, H, W, K, element_bytes, pool, sm_count, tile='', smem_optin=0, wgmma=True) -> "
     "dict: the "
     "block tile, split-K and (persistent ws tiles, y NHWC) grid and stream-K schedule the conv3x3 "
     "implicit_gemm kernel uses for that shape (tile '' : its default or VGGKERN_IMPLICIT_GEMM_TILE; "
     "VGGKERN_IMPLICIT_GEMM_SPLIT_K, _GRID and _STREAM_K apply) on a device whose blocks may have "
     "smem_optin bytes of shared memory (0: no limit) that runs the wgmma tiles or not."},
    {"implicit_gemm_last_copies", implicit_gemm_last_copies, METH_NOARGS,
     "implicit_gemm_last_copies() -> dict | None: how this process's last ws-tile (ws128x256, ws128x128) "
     "launch copied its stages: {'tile', 'path': 'tma' (tensor loads) or 'cp_async', 'reason': why not "
     "tensor loads, '' where they ran; 'stores', 'stores_reason': y's stores likewise; 'stream_k': '' (whole "
     "tiles) or how many tiles stream-K shared out}; None before any."},
    {"conv3x3_auto", conv3x3_auto, METH_VARARGS,
     "conv3x3_auto(dtype, N, C, H, W, K, channels_last, pool, tf32_allowed) -> str: the algorithm "
     "algo='auto' runs for that call (the measured table's pick, else 'direct')."},
    {"tuned_tables", tuned_tables, METH_NOARGS,
     "The measured tables conv3x3 uses: implicit_gemm tiles and auto's picks (the build's, "
     "common/conv3x3_tuned.h, or those vggkern.set_tuned_tables gave: run_time True)."},
    {"_set_tuned_tables", set_tuned_tables, METH_VARARGS,
     "_set_tuned_tables(source, tiles, autos): use these tables (checked by vggkern.set_tuned_tables); "
     "no arguments: the build's again."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "vggkern's compiled ops (registered in torch.ops.vggkern).", -1,
                      methods};

}  // namespace

// TORCH_VERSION: the torch whose headers and libraries this build used ("2.14.1"), which
// vggkern/__init__.py compares with the torch that loaded it.
PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddStringConstant(m, "TORCH_VERSION", TORCH_VERSION) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
