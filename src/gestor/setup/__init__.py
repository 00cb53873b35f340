"""``gestor setup``: find the meter and the relays on the LAN, check them live, ask a few
questions and write the settings (issue 34). Nobody edits YAML.

Modules, each importing only the ones before it: :mod:`.found` (what a finder proposes: a
settings section by the fixed driver names and keys), :mod:`.shelly` (a Shelly's own
``/shelly`` answer: meter or relay), :mod:`.mdns` (zeroconf browsing), :mod:`.modbus`
(Modbus TCP on 502/6607: SunSpec marker, Huawei model name), :mod:`.udp` (GoodWe's UDP search,
SMA's speedwire multicast), :mod:`.answers` (the questions, interactive or ``--answers``),
:mod:`.live` (reading the meter, flipping the relays), :mod:`.writing` (the YAML, its diff, the
copy of the old file, validation, the extra, the units) and :mod:`.command` (the steps in order);
:mod:`.options` holds the command-line options alone (the ``gestor`` parser imports only it).

Layer 7 (a program, like :mod:`gestor.cli`). The optional libraries (zeroconf, goodwe,
pysma-plus) are imported inside the finder that needs them, so the daemons never load them.
"""
