"""gestor: a home energy manager for Spanish self-consumption with hourly net billing.

Sign convention (DESIGN.md section 2), used everywhere:
``net_w = production_w - consumption_w`` is export-positive; ``balance_wh`` is the integral of
``net_w`` over the current settlement period (exported minus imported Wh).
"""

__version__ = "0.1.0"
