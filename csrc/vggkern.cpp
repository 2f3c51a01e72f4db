// The vggkern library: every op schema in one TORCH_LIBRARY, and the vggkern._C
// Python module (importing it registers the ops; build_info() says what was built).
#include <Python.h>

#include <string>
#include <torch/library.h>

#include "common/backends.h"
#include "common/conv3x3_implicit_gemm_plan.h"
#include "common/conv3x3_tuned.h"
#include "emu/bank_stats.h"
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
        "bool? allow_tf32=None) -> Tensor");
  m.def("winograd_weight(Tensor weight, int tile) -> Tensor");
  m.def("_winograd_matrices(int tile) -> (Tensor, Tensor, Tensor)");
  // conv3x3's derivatives as composite ops (aten ops only, so differentiable), for its
  // Python autograd.Function (torch.func, forward-mode AD: csrc/ops/autograd.cpp), which
  // is _conv3x3_forward_ad's kernel.
  m.def("_conv3x3_forward_ad(Tensor x, Tensor weight, Tensor? bias, bool relu, bool pool, str algo, "
        "bool? allow_tf32) -> Tensor");
  m.def("_conv3x3_backward(Tensor grad, Tensor x, Tensor weight, Tensor? bias, bool relu, bool pool, "
        "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  m.def("_conv3x3_jvp(Tensor x, Tensor weight, Tensor? bias, Tensor? x_tangent, Tensor? weight_tangent, "
        "Tensor? bias_tangent, bool relu, bool pool) -> Tensor");
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
  return Py_BuildValue("{s:O,s:s,s:O,s:i,s:s,s:i}", "cuda_kernels", cuda, "cuda_archs", VK_CUDA_ARCHS, "cuda_wgmma",
                       wgmma, "cuda_runtime_version", cuda_runtime, "emulator_context_switch", switcher,
                       "emulator_threads", vk::emu::worker_count());
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

// implicit_gemm's plan for a shape (conv3x3_implicit_gemm_plan.h), C as the kernel sees
// it (padded to a multiple of 8): for tests and the benchmarks' model.
PyObject* implicit_gemm_plan(PyObject*, PyObject* args) {
  long long n, c, h, w, k;
  int element_bytes, pool, sm_count;
  const char* tile = "";
  if (!PyArg_ParseTuple(args, "LLLLLipi|s", &n, &c, &h, &w, &k, &element_bytes, &pool, &sm_count, &tile))
    return nullptr;
  vk::Conv3x3Args a{};
  a.dtype = element_bytes == 4 ? vk::DType::float32 : vk::DType::float16;
  a.N = n, a.C = (c + 7) / 8 * 8, a.H = h, a.W = w, a.K = k, a.pool = pool != 0, a.sm_count = sm_count;
  try {
    const vk::ImplicitGemmPlan p = tile[0] == '\0'
                                       ? vk::implicit_gemm_plan(a)
                                       : vk::implicit_gemm_plan(a, vk::implicit_gemm_tile_named(tile, "tile"));
    return Py_BuildValue("{s:s,s:i,s:i,s:L,s:L,s:L,s:L,s:i,s:L,s:L}", "tile", vk::implicit_gemm_tile_name(p.tile),
                         "bm", p.bm, "bn", p.bn, "M",
                         static_cast<long long>(p.M), "m_tiles", static_cast<long long>(p.m_tiles), "k_blocks",
                         static_cast<long long>(p.k_blocks), "slices", static_cast<long long>(p.slices), "splits",
                         p.splits, "slices_per_split", static_cast<long long>(p.slices_per_split), "blocks",
                         static_cast<long long>(p.blocks()));
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
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

// The measured tables (common/conv3x3_tuned.h) as Python data, for tests and reports.
PyObject* tuned_tables(PyObject*, PyObject*) {
  static const char* kDtypes[] = {"float32", "float16", "bfloat16"};
  PyObject* tiles = PyList_New(0);
  for (const vk::TunedTile& e : vk::kTunedTiles) {
    PyObject* row = Py_BuildValue("{s:L,s:L,s:L,s:L,s:O,s:L,s:s,s:O}", "C", (long long)e.shape.C, "K",
                                  (long long)e.shape.K, "H", (long long)e.shape.H, "W", (long long)e.shape.W, "pool",
                                  e.shape.pool ? Py_True : Py_False, "N", (long long)e.shape.N, "tile",
                                  vk::implicit_gemm_tile_name(e.tile), "tf32", e.tf32 ? Py_True : Py_False);
    PyList_Append(tiles, row);
    Py_DECREF(row);
  }
  PyObject* autos = PyList_New(0);
  for (const vk::TunedAuto& e : vk::kTunedAuto) {
    PyObject* row = Py_BuildValue(
        "{s:s,s:O,s:L,s:L,s:L,s:L,s:O,s:L,s:s}", "dtype", kDtypes[static_cast<int>(e.dtype)], "channels_last",
        e.layout == vk::Layout::nhwc ? Py_True : Py_False, "C", (long long)e.shape.C, "K", (long long)e.shape.K, "H",
        (long long)e.shape.H, "W", (long long)e.shape.W, "pool", e.shape.pool ? Py_True : Py_False, "N",
        (long long)e.shape.N, "algo", e.algo == vk::TunedAlgo::implicit_gemm ? "implicit_gemm" : "direct");
    PyList_Append(autos, row);
    Py_DECREF(row);
  }
  return Py_BuildValue("{s:s,s:N,s:N}", "source", vk::kTunedSource, "tiles", tiles, "auto", autos);
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
    {"implicit_gemm_plan", implicit_gemm_plan, METH_VARARGS,
     "implicit_gemm_plan(N, C, H, W, K, element_bytes, pool, sm_count, tile='') -> dict: the block tile and "
     "split-K the conv3x3 implicit_gemm kernel uses for that shape (tile '' : its default or "
     "VGGKERN_IMPLICIT_GEMM_TILE; VGGKERN_IMPLICIT_GEMM_SPLIT_K applies)."},
    {"conv3x3_auto", conv3x3_auto, METH_VARARGS,
     "conv3x3_auto(dtype, N, C, H, W, K, channels_last, pool, tf32_allowed) -> str: the algorithm "
     "algo='auto' runs for that call (the measured table's pick, else 'direct')."},
    {"tuned_tables", tuned_tables, METH_NOARGS,
     "The measured tables this build carries (common/conv3x3_tuned.h): implicit_gemm tiles and auto's picks."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "vggkern's compiled ops (registered in torch.ops.vggkern).", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
