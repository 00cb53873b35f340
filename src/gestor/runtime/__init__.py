"""What a daemon needs around the control core: opening drivers and the systemd loop
(:mod:`.daemon`), the state files (:mod:`.statefiles`, :mod:`.livestate`: the readings and
managing's state published in ``run_dir``, the stop latch), the overrides (:mod:`.overrides`),
MQTT and Home Assistant (:mod:`.mqtt`), managing's collaborators (the relays' commands and the
loads as managing drives them, :mod:`.relays`; the day's books, :mod:`.books`; the price feed,
:mod:`.pricefeed`; its MQTT side, :mod:`.mqttstate`; the stop latch it holds, :mod:`.latch`; the
stop button, :mod:`.stopbutton`; its state file, :mod:`.persist`; the setpoint devices' energy
counters, :mod:`.devicebooks`, and the household's controls of them, :mod:`.devicecontrols`), the stop plan and relay
fingerprints (:mod:`.stopplan`), the emergency stop's targets and its switching off, latch and
read-back (:mod:`.stoptargets`, :mod:`.stopping`: ``stop_loads`` is the program), ``gestor status`` (:mod:`.status`), the installer's InfluxDB
binding (:mod:`.influxconf`) and the virtual meter served to zero-export devices
(:mod:`.virtualmeter`). It may import the core, the tariff, the settings, the drivers and
the foundation; never the simulator, the web page or the programs (``managing``,
``monitoring``, ``stop_loads``, :mod:`gestor.cli`).
"""
