"""The programs on recorded data: ``gestor simulate`` (:mod:`.simulate`: the daemons' timing
replayed over a recording, on/off loads and setpoint devices in one loop; :mod:`.books`: what it
counts per period and in all; :mod:`.inputs`: a recording's columns and the prices; :mod:`.devices`:
the setpoint devices' turn each cycle; :mod:`.models`: what a heater, a battery, an EV charger do
with a setpoint; :mod:`.report`: its command line, tables and plots), ``gestor tune`` (:mod:`.tune`:
cross-validated parameters), the one-device replay (:mod:`.setpoint`) and the devices'
perfect-foresight LP (:mod:`.lp`, which alone imports SciPy, lazily: the extra ``lp``), the demo
(:mod:`.demo`, on :mod:`.lockstep`: the real daemons on a simulated clock). A top layer: it may
import everything below (core, tariff, runtime, settings, drivers) and the daemons' programs it
runs; nothing below imports it. Inside it the imports go one way (tests/test_layering.py):
inputs, books <- models <- devices <- simulate <- tune, report.
"""
