"""Whisper's greedy decode step as one CUDA kernel (step.py, decode_step.cu), for MLX's CUDA
backend; compiled once per machine through whisperfast.kernels.cuda_cache."""
