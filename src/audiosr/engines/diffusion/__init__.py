"""The AudioSR diffusion engine, one job per module.

| module | job |
|---|---|
| ``placement.py`` | device vs host (fp64 DSP never on the device), offload, pinning |
| ``layout.py`` | NCHW / channels-last weights and activations |
| ``compiled.py`` | ``torch.compile`` cache with bounded recompilation |
| ``precision.py`` | per-stage autocast, TF32 policy, "auto" precision per device |
| ``timing.py`` | seconds per stage |
| ``fallback.py`` | full-resolution stages item by item, fp16-overflow retry in fp32 |
| ``runtime.py`` | the loaded model + host front end + schedule; stage context |
| ``generate.py`` | condition -> encode -> sample -> decode -> vocode -> merge |
| ``engine.py`` | the :class:`~audiosr.engines.base.Engine` adapter |

Speed and memory options are all in :class:`~audiosr.config.SamplingOptions`; the defaults
are the faithful fp32 path.
"""

from ...config import STAGES
from .engine import AudioSREngine
from .generate import GenerateResult, generate
from .precision import stage_dtype
from .runtime import Conditioning, DiffusionRuntime, Generators

__all__ = [
    "STAGES",
    "AudioSREngine",
    "Conditioning",
    "DiffusionRuntime",
    "GenerateResult",
    "Generators",
    "generate",
    "stage_dtype",
]
