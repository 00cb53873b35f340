"""gestor: a home energy manager for Spanish self-consumption with hourly net billing.

Sign convention (DESIGN.md section 2), used everywhere:
``net_w = production_w - consumption_w`` is export-positive; ``balance_wh`` is the integral of
``net_w`` over the current settlement period (exported minus imported Wh).

The house plan, bottom to top (a module imports only from its own layer or below;
``tests/test_layering.py`` checks it):

1. the foundation: :mod:`gestor.clock` (the injected clocks), :mod:`gestor.files` (bounded file
   reads, atomic writes), :mod:`gestor.console` (the commands' output when its reader goes away);
2. :mod:`gestor.tariff.calendar` (the 2.0TD calendar) and :mod:`gestor.core` (the balance,
   policies, guards, control cycle, foresight: pure);
3. :mod:`drivers` (meters, relays, the store: the devices' glue);
4. :mod:`gestor.settings` (the settings file, validated);
5. :mod:`gestor.tariff` (prices: ESIOS, cache, money);
6. :mod:`gestor.runtime` (what the daemons need around the core);
7. the programs: ``managing``, ``monitoring``, ``stop_loads`` (src/), :mod:`gestor.sim`,
   :mod:`gestor.web`, :mod:`gestor.cli`.
"""

__version__ = "0.1.0"
