"""The vggkern command line.

    python -m vggkern           the main job (for now the same as `info`; the VGG
                                agreement check comes with the models)
    python -m vggkern info      what this build contains and what it runs on
"""
import argparse
import platform
import sys

import torch


def info() -> int:
    import vggkern

    built = vggkern.build_info()
    print(f"vggkern {vggkern.__version__}")
    print(f"  python        {platform.python_version()} ({sys.executable})")
    print(f"  torch         {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
          f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'})")
    if built["cuda_kernels"]:
        rt = built["cuda_runtime_version"]
        print(f"  CUDA kernels  compiled for sm {built['cuda_archs']} against CUDA runtime {rt // 1000}.{rt % 1000 // 10}")
    else:
        print("  CUDA kernels  NOT compiled (built without nvcc): CUDA tensors are refused")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"  GPU {i}         {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                  f"{p.multi_processor_count} SMs")
    else:
        print("  GPU           none visible: CPU tensors run our kernels through the SIMT emulator")
    print(f"  emulator      {built['emulator_threads']} worker threads, {built['emulator_context_switch']} "
          "context switches (VGGKERN_EMU_THREADS to change)")
    names = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("vggkern::"))
    print(f"  ops           {', '.join('torch.ops.vggkern.' + n for n in names)}")
    algorithms = getattr(vggkern, "algorithms", None)
    print(f"  conv3x3 algos {', '.join(algorithms()) if algorithms else 'none yet'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vggkern", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="what this build contains and what it runs on")
    args = parser.parse_args(argv)
    if args.command in (None, "info"):
        return info()
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
