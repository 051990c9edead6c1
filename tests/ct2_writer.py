"""Writes CTranslate2 model.bin files (the format whisperfast.ct2 reads), for test fixtures."""

import struct

import numpy as np

from whisperfast import ct2


def write_model_bin(variables: dict[str, np.ndarray], aliases: dict[str, str] = {}, name: str = "WhisperSpec") -> bytes:
    """The inverse of whisperfast.ct2.read_model_bin: CTranslate2 model.bin bytes, for fixtures."""

    def string(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    out = [struct.pack("<I", ct2.BINARY_VERSION), string(name), struct.pack("<II", 3, len(variables))]
    for key, value in variables.items():
        value = np.array(value, order="C")
        out += [string(key), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape)]
        out += [struct.pack("<BI", ct2.DTYPES.index(value.dtype.name), value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(a) + string(t) for a, t in aliases.items()]
    return b"".join(out)
