"""The decode-step kernel driven step by step without a decode loop, for the probes beside it
(rows_phases.py, step_bits.py): JFK's first window, `rows` rows of one prompt. With `forward`
the forward pass of beams and samples (no picks: each row's argmax goes on), else greedy
decoding with the kernel's picks, a window a row."""

import mlx.core as mx

from whisperfast.decode.cuda import step as cs
from whisperfast.decode.task import StaticCacheTask


def start(model, features: mx.array, options, rows: int, forward: bool, separate: bool = False):
    """The prompt through the kernel -> (run, tokens, sums): run is cs.cuda_step's CudaDecode,
    sums None for `forward`. `separate`: the forward pass's rows each an audio of their own
    (batched mode's), not rows of one audio."""
    task = StaticCacheTask(model, options)
    feats = features if forward and not separate else mx.repeat(features, rows, axis=0)
    run = cs.cuda_step(task, rows, feats.dtype)
    run.greedy = run.picks = not forward  # greedy: the kernel's own picks, at any row count
    prompt = mx.array([list(task.initial_tokens)] * rows)
    if forward:  # (rows of one audio part at the first step's ties)
        logits = run.logits(prompt, feats, task.sot_index)
        tokens = mx.concatenate([prompt, mx.argmax(logits[:, -1], -1)[:, None].astype(prompt.dtype)], 1)
        sums = None
    else:
        tokens, _, sums, _ = run.prompt(prompt, feats, task.sot_index)
    mx.eval(tokens)
    return run, tokens, sums


def advance(run, tokens: mx.array, sums, forward: bool):
    """One step, evaluated -> (logits of the last position (B, n_vocab) or None, tokens, sums)."""
    if forward:
        out = run.logits(tokens)
        mx.eval(out)
        return out[:, -1], mx.concatenate([tokens, mx.argmax(out[:, -1], -1)[:, None].astype(tokens.dtype)], 1), None
    tokens, _, sums = run(tokens, sums)
    mx.eval(tokens, sums)
    return None, tokens, sums
