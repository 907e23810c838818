import sys
from pathlib import Path

# Test helpers (tiny_sam, masks_synth) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
