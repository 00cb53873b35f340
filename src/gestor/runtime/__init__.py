"""What a daemon needs around the control core: opening drivers and the systemd loop
(:mod:`.daemon`), the state files (:mod:`.statefiles`, :mod:`.livestate`: the readings and
managing's state published in ``run_dir``, the stop latch), the overrides (:mod:`.overrides`),
MQTT and Home Assistant (:mod:`.mqtt`), managing's collaborators (the relays' commands, the day's
books, the price feed, the stop button, persistence), the stop plan, ``gestor status``
(:mod:`.status`) and the installer's InfluxDB binding (:mod:`.influxconf`). It may import the core,
the tariff, the settings, the drivers and the foundation; never the simulator, the web page or
the programs (``managing``, ``monitoring``, ``stop_loads``, :mod:`gestor.cli`).
"""
