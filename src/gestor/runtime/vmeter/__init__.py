"""The virtual meter's parts (``gestor virtual-meter``, :mod:`gestor.runtime.virtualmeter`): the
reading it shows (:mod:`.base`), the Shelly Pro 3EM's RPC (:mod:`.shelly`) over HTTP and UDP
(:mod:`.shellyhttp`) and a WebSocket (:mod:`.websocket`), and the Eastron SDM630 (:mod:`.sdm630`)."""
