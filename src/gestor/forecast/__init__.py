"""The production forecast of the installation (issue 26, the nowcast of the rest of the period):
its clear-sky model fitted from its own production history (:mod:`.pvmodel`: pvlib, numpy,
scipy; imported only by the commands and benchmarks that fit or write a profile, never by the
daemons) and the small JSON file of clear-sky production it writes for the next hours, with its
standard-library reader (:mod:`.profile`, which managing may import: no pvlib, no numpy). The
arithmetic of the nowcast itself is pure and lives in :mod:`gestor.core.nowcast`.

A layer beside the tariff: it may import the core, the foundation (:mod:`gestor.clock`,
:mod:`gestor.files`) and the standard library; :mod:`.pvmodel` also pvlib, pandas, numpy and
scipy, lazily or at its top (nothing the daemons import imports it). Never the runtime, the
simulator, the web page or the programs.
"""
