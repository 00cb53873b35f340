"""The virtual meter's parts (``gestor virtual-meter``, :mod:`gestor.runtime.virtualmeter`): the
reading it shows (:mod:`.base`), the Shelly Pro 3EM's RPC (:mod:`.shelly`) over HTTP and UDP
(:mod:`.shellyhttp`) and a WebSocket (:mod:`.websocket`), and the Eastron SDM630 (:mod:`.sdm630`).
Part of the runtime layer: it may import the core, the settings, the runtime's own modules
(daemon, livestate, statefiles) and the foundation; never the simulator, the web page or the
programs."""
