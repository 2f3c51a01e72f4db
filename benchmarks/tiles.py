"""The implicit-GEMM plan's tile choices by layer, in Python (no torch): the rule's tile
where the measured table has no entry (with wgmma or without), and the wgmma policies' tile
(VGGKERN_IMPLICIT_GEMM_TILE=wgmma | wgmma-wide | wgmma-ws). The plan itself is C++
(csrc/common/conv3x3_implicit_gemm_plan.h); tests/test_tune.py checks these against it.
Used by cases.py (what the sweeps time), tune.py (the tile an entry must beat) and
roofline.py (what the model counts)."""
from __future__ import annotations

WGMMA_POLICIES = ("wgmma", "wgmma-wide", "wgmma-ws")


def is_wgmma(tile: str) -> bool:
    """A wgmma tile (sm_90a): wg128x128, wg256x64, wg128x256, and the warp-specialised
    ws128x256 and ws128x128."""
    return tile.startswith(("wg", "ws"))


def rule_tile(k: int, wgmma: bool = False) -> str:
    """The plan's tile for K output channels where the table has no entry: where wgmma runs
    (an sm_90a build on a compute capability 9.0 GPU), wgmma-wide's; elsewhere mma.sync's
    256x64 where K <= 64, else 128x128."""
    if wgmma:
        return wgmma_policy_tile(k, "wgmma-wide")
    return "256x64" if k <= 64 else "128x128"


def wgmma_policy_tile(k: int, policy: str = "wgmma") -> str:
    """The tile a policy (one of WGMMA_POLICIES) gives K output channels: wgmma: wg256x64
    where K <= 64, else wg128x128; wgmma-wide: the same, and wg128x256 where K >= 256;
    wgmma-ws: the warp-specialised twins, ws128x256 where K >= 256 and ws128x128 below."""
    if policy not in WGMMA_POLICIES:
        raise ValueError(f"unknown wgmma policy {policy!r}; expected one of {WGMMA_POLICIES}")
    if k <= 64:
        return "wg256x64"
    if policy == "wgmma-ws":
        return "ws128x128" if k < 256 else "ws128x256"
    return "wg128x128" if k < 256 or policy == "wgmma" else "wg128x256"


def wgmma_policy_tiles(k: int) -> tuple:
    """The tiles the policies give a layer of K output channels, in policy order, each once."""
    return tuple(dict.fromkeys(wgmma_policy_tile(k, policy) for policy in WGMMA_POLICIES))
