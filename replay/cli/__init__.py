"""TODO"""

from .commands import main as main
from .commands import run as run
