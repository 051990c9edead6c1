"""Would the CUDA libraries' first calls cost less made early, on the context thread, while
mlx.core loads (issue 13)? After cuInit and the primary context (what _cuda_context does), a
child's thread also:
- "context": nothing more (the CLI as it is);
- "cufft": loads cuFFT and makes a plan of the mel's shape (n 400, real to complex, 4101 rows:
  a 30 s padded window of 11 s) and keeps it;
- "libs": that, and a cuBLASLt handle and a cuDNN handle.
MLX makes its own plan and handles later; whether the first ones leave anything it reuses (the
kernels' modules loaded into the context, cuDNN's sub-libraries loaded) is what this measures.
Then the main thread joins the thread (before MLX's first call, as the CLI does) and runs the
CLI's warm-up (runtime._first_mel, then runtime._first_encoder_block), stamping each. The
libraries are found as MLX finds them: by soname, else in the nvidia folder beside mlx's.
Each child stamps seconds since its parent spawned it; modes alternate; round 0 is dropped.

Usage: python benchmarks/libs_first_probe.py RUNS
Prints one JSON line per child, then each mode's median stamps."""

import sys

from driver_first_probe import alternate  # this folder is the script's: first on sys.path

CHILD = r'''
import ctypes, importlib.util, json, os, sys, threading, time
t0 = float(os.environ["PROBE_T0"])
S = {}
def st(k):
    S.setdefault(k, round(time.time() - t0, 4))
st("python")
mode = sys.argv[1]
def lib(soname):
    try:
        return ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        mlx = importlib.util.find_spec("mlx").submodule_search_locations[0]
        return ctypes.CDLL(os.path.join(mlx, "..", "nvidia", "cu13", "lib", soname), mode=ctypes.RTLD_GLOBAL)
kept = []
def early():
    cu = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert cu.cuInit(0) == 0 and cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
    st("context")
    if mode in ("cufft", "libs"):
        fft = lib("libcufft.so.12")
        st("cufft loaded")
        plan = ctypes.c_int()
        S["cufft rc"] = fft.cufftPlan1d(ctypes.byref(plan), 400, 0x2a, 4101)
        kept.append(plan)
        st("cufft plan")
    if mode == "libs":
        lt = lib("libcublasLt.so.13")
        h = ctypes.c_void_p()
        S["cublasLt rc"] = lt.cublasLtCreate(ctypes.byref(h))
        kept.append(h)
        st("cublasLt handle")
        dnn = lib("libcudnn.so.9")
        h2 = ctypes.c_void_p()
        S["cudnn rc"] = dnn.cudnnCreate(ctypes.byref(h2))
        kept.append(h2)
        st("cudnn handle")
thread = threading.Thread(target=early)
thread.start()
import mlx.core as mx
st("mlx.core")
from whisperfast import runtime
thread.join()
st("joined")
mel = runtime._first_mel()
mx.eval(mel)
st("mel")
runtime._first_encoder_block(mel, mx.float16, True)
st("encoder block")
print(json.dumps(S))
'''

def main():
    alternate(CHILD, ("context", "cufft", "libs"), int(sys.argv[1]))


if __name__ == "__main__":
    main()
