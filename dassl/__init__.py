"""Compact re-implementation of the parts of Dassl.pytorch that CoOp-family methods use.

Import paths, names, config keys and defaults follow upstream Dassl so code written for either runs on both.
"""

__version__ = "0.6.3"
