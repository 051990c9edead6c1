"""The torch peers on a loaded model's weights: openai-whisper, and Hugging Face transformers'
chunked batch pipeline (insanely-fast-whisper's way). On a CUDA device when torch sees one
(float16 where the model is), else on the CPU in float32."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import WhisperfastError
from ..tokenizer import PATTERN, get_tokenizer, vocabulary_file
from . import need
from .weights import dims, openai_state


def _torch(lane: str, **packages: str):
    need(lane, torch="torch", **packages)
    import torch

    return torch


def _device(torch, model, gpu: bool) -> tuple[str, object]:
    """CUDA where whisperfast's lanes run on a GPU and torch sees one (float16 where the model is),
    else the CPU in float32."""
    if gpu and torch.cuda.is_available():
        return "cuda", torch.float16 if model.dtype == "float16" else torch.float32
    return "cpu", torch.float32


def openai_whisper(model, batch_size: int, gpu: bool) -> tuple[Callable[[list[np.ndarray]], list[str]], str]:
    """openai-whisper's `transcribe` (greedy, the temperature fallback: mlx-whisper's semantics). It
    has no batched mode, so each audio runs on its own whatever `batch_size` says."""
    torch = _torch("openai-whisper", openai_whisper="whisper.model")
    import whisper
    from whisper.model import ModelDimensions, Whisper

    h = dims(model.whisper)
    net = Whisper(ModelDimensions(**h))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in openai_state(model.whisper).items()}, strict=True)
    device, dtype = _device(torch, model, gpu)
    net = net.to(device).eval()  # float32 weights; fp16=True casts them per layer, as openai-whisper's own load does
    language = None if net.is_multilingual else "en"

    def run(audio: list[np.ndarray]) -> list[str]:
        return [whisper.transcribe(net, a, fp16=dtype == torch.float16, language=language, verbose=None)["text"]
                for a in audio]

    how = f"openai-whisper on {device}, {'float16' if dtype == torch.float16 else 'float32'}, greedy"
    return run, how + ("" if batch_size == 1 else ", one audio at a time (it has no batched mode)")


def _hf_tokenizer(whisper):
    """transformers' fast tokenizer on the same vocabulary and special tokens as whisperfast's."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    multilingual = whisper.is_multilingual
    ours = get_tokenizer(multilingual, num_languages=whisper.num_languages)
    tk = TikTokenConverter(vocab_file=vocabulary_file("multilingual" if multilingual else "gpt2"),
                           pattern=PATTERN).converted()
    specials = sorted(ours.encoding._special_tokens.items(), key=lambda kv: kv[1])
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in specials])
    eot = "<|endoftext|>"
    return WhisperTokenizerFast(tokenizer_object=tk, unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot), ours


def _hf_generation_config(ours, multilingual: bool):
    from transformers import GenerationConfig

    suppress = list(ours.non_speech_tokens) + [ours.transcribe, ours.translate, ours.sot, ours.sot_prev, ours.sot_lm]
    if ours.no_speech is not None:
        suppress.append(ours.no_speech)
    # transformers reads an English-only model from these keys' absence (present, it detects a language)
    languages = dict(lang_to_id={f"<|{c}|>": t for c, t in zip(ours.all_language_codes, ours.all_language_tokens)},
                     task_to_id={"transcribe": ours.transcribe, "translate": ours.translate}) if multilingual else {}
    return GenerationConfig(
        decoder_start_token_id=ours.sot, eos_token_id=ours.eot, pad_token_id=ours.eot, bos_token_id=ours.eot,
        no_timestamps_token_id=ours.no_timestamps, prev_sot_token_id=ours.sot_prev, max_initial_timestamp_index=50,
        max_length=448, suppress_tokens=sorted(set(suppress)), begin_suppress_tokens=[220, ours.eot],
        is_multilingual=multilingual, **languages)


_RENAMES = (("encoder.blocks.", "encoder.layers."), ("decoder.blocks.", "decoder.layers."),
            (".attn.query", ".self_attn.q_proj"), (".attn.key", ".self_attn.k_proj"), (".attn.value", ".self_attn.v_proj"),
            (".attn.out", ".self_attn.out_proj"), (".cross_attn.query", ".encoder_attn.q_proj"),
            (".cross_attn.key", ".encoder_attn.k_proj"), (".cross_attn.value", ".encoder_attn.v_proj"),
            (".cross_attn.out", ".encoder_attn.out_proj"), (".attn_ln", ".self_attn_layer_norm"),
            (".cross_attn_ln", ".encoder_attn_layer_norm"), (".mlp_ln", ".final_layer_norm"), (".mlp.0", ".fc1"),
            (".mlp.2", ".fc2"), ("encoder.ln_post", "encoder.layer_norm"), ("decoder.ln.", "decoder.layer_norm."),
            ("decoder.token_embedding", "decoder.embed_tokens"),
            ("decoder.positional_embedding", "decoder.embed_positions.weight"),
            ("encoder.positional_embedding", "encoder.embed_positions.weight"))


def hf_name(name: str) -> str:
    """transformers' WhisperForConditionalGeneration name of an openai-whisper one."""
    for a, b in _RENAMES:
        name = name.replace(a, b)
    return "model." + name


def hf_model(model):
    """(transformers' WhisperForConditionalGeneration on `model`'s weights, on the CPU in float32,
    with Whisper's generation settings; its tokenizer; whisperfast's tokenizer)."""
    torch = _torch("transformers", transformers="transformers")
    import transformers as tf

    h = dims(model.whisper)
    tokenizer, ours = _hf_tokenizer(model.whisper)
    config = tf.WhisperConfig(
        vocab_size=h["n_vocab"], num_mel_bins=h["n_mels"], encoder_layers=h["n_audio_layer"],
        encoder_attention_heads=h["n_audio_head"], decoder_layers=h["n_text_layer"], decoder_attention_heads=h["n_text_head"],
        d_model=h["n_audio_state"], encoder_ffn_dim=4 * h["n_audio_state"], decoder_ffn_dim=4 * h["n_text_state"],
        max_source_positions=h["n_audio_ctx"], max_target_positions=h["n_text_ctx"], decoder_start_token_id=ours.sot,
        eos_token_id=ours.eot, pad_token_id=ours.eot, bos_token_id=ours.eot, attn_implementation="sdpa")
    net = tf.WhisperForConditionalGeneration(config)
    state = {hf_name(k): torch.from_numpy(v) for k, v in openai_state(model.whisper).items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WhisperfastError(f"transformers' model took other weights: missing {result.missing_keys[:3]}, "
                               f"unexpected {result.unexpected_keys[:3]}")
    net.generation_config = _hf_generation_config(ours, model.whisper.is_multilingual)
    return net, tokenizer, ours


# transformers' ASR pipeline adds num_beams=5 unless the generation config sets a count other
# than the library's default 1, so greedy has to be asked for on every call
GREEDY = {"num_beams": 1, "do_sample": False}


def hf_pipeline(model, gpu: bool):
    """(transformers' automatic-speech-recognition pipeline on `model`'s weights, the keyword
    arguments of a greedy call with timestamps, a description)."""
    torch = _torch("transformers", transformers="transformers")
    import transformers as tf

    net, tokenizer, _ = hf_model(model)
    device, dtype = _device(torch, model, gpu)
    net = net.to(device=device, dtype=dtype).eval()
    pipe = tf.pipeline("automatic-speech-recognition", model=net, tokenizer=tokenizer,
                       feature_extractor=tf.WhisperFeatureExtractor(feature_size=dims(model.whisper)["n_mels"]),
                       device=device)  # it casts the features to the model's dtype
    task = {"task": "transcribe"} if model.whisper.is_multilingual else {}  # the language detected, as in the other lanes
    call = dict(chunk_length_s=30, return_timestamps=True, generate_kwargs={**GREEDY, **task}, ignore_warning=True)
    return pipe, call, f"transformers {tf.__version__} pipeline on {device}, {str(dtype).removeprefix('torch.')}, greedy"


def transformers(model, batch_size: int, gpu: bool) -> tuple[Callable[[list[np.ndarray]], list[str]], str]:
    """transformers' automatic-speech-recognition pipeline as insanely-fast-whisper runs it: 30 s
    chunks (its 5 s strides), `batch_size` chunks a `generate` call, timestamps on; greedy."""
    torch = _torch("transformers", transformers="transformers")
    pipe, call, how = hf_pipeline(model, gpu)

    def run(audio: list[np.ndarray]) -> list[str]:
        with torch.inference_mode():
            out = pipe([a.astype(np.float32) for a in audio], batch_size=batch_size, **call)
        return [o["text"] for o in out]

    return run, f"{how}, 30 s chunks, {batch_size} a batch"
