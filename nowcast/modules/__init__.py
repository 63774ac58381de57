"""Building blocks of the nowcasting networks: recurrent cells, attention, resampling.

Shapes follow ``(B, C, H, W)`` for one time step; windows of states are ``(Q, B, C, H, W)``.
"""

from nowcast.modules.attention import MotionAttention
from nowcast.modules.convgru import ConvGRUCell
from nowcast.modules.convlstm import ConvLSTMCell
from nowcast.modules.sampling import DownBlock, UpBlock
from nowcast.modules.trajgru import TrajGRUCell, warp
from nowcast.modules.trajgru_ode import ODEFunc, TrajGRUODECell, solve_latent
from nowcast.modules.zigzag import ZigzagShortcut

__all__ = [
    "ConvGRUCell",
    "ConvLSTMCell",
    "DownBlock",
    "MotionAttention",
    "ODEFunc",
    "TrajGRUCell",
    "TrajGRUODECell",
    "UpBlock",
    "ZigzagShortcut",
    "solve_latent",
    "warp",
]
