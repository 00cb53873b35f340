"""The programs on recorded data: ``gestor simulate`` (:mod:`.simulate`: the daemons' timing
replayed over a recording; :mod:`.report`: its command line, tables and plots), ``gestor tune``
(:mod:`.tune`: cross-validated parameters), the setpoint devices replayed (:mod:`.setpoint`: a
modulating heater, a battery, an EV charger) and their perfect-foresight LP (:mod:`.lp`, which
alone imports SciPy, lazily: the extra ``lp``), the demo (:mod:`.demo`, on :mod:`.lockstep`: the real
daemons on a simulated clock). A top layer: it may import everything below (core, tariff, runtime,
settings, drivers) and the daemons' programs it runs; nothing below imports it.
"""
