"""The tariff: the 2.0TD calendar (:mod:`.calendar`: P1/P2/P3 periods, national holidays, each
price zone's clock; pure, below the control core, which ranks the daily minimum's hours by it)
and the prices (:mod:`.prices`: ESIOS and REE's public PVPC file, a prices file, the day cache on
disk, the money of a settlement period). :mod:`.prices` may import the foundation
(:mod:`gestor.files`, :mod:`gestor.clock`), the drivers' HTTP and store glue and
:mod:`gestor.settings`; never the runtime, the simulator, the web page or the programs.
"""
