import os
import sys

# Import the freshly built module (build/python) unless PYTHONPATH already points somewhere.
_build = os.path.join(os.path.dirname(__file__), "..", "..", "build", "python")
if "dsv4" not in sys.modules and os.path.isdir(_build) and _build not in sys.path:
    sys.path.append(_build)
